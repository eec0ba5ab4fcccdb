package mobile

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"strings"
	"testing"
)

// TestBindableSurface checks that every exported function, method, field
// and constant of the package uses only types gomobile bind accepts, so
// that the binding builds without running gomobile here.
func TestBindableSurface(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkg := pkgs["mobile"]
	// Exported structs and interfaces declared here may be passed by
	// pointer (structs) or value (interfaces).
	local := map[string]bool{}
	for _, f := range pkg.Files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					if ts.Name.IsExported() {
						local[ts.Name.Name] = true
					}
				}
			}
		}
	}
	basic := map[string]bool{"int": true, "int8": true, "int16": true, "int32": true, "int64": true,
		"float32": true, "float64": true, "bool": true, "string": true, "error": true}
	var ok func(e ast.Expr) bool
	ok = func(e ast.Expr) bool {
		switch e := e.(type) {
		case *ast.Ident:
			return basic[e.Name] || local[e.Name]
		case *ast.StarExpr:
			id, isID := e.X.(*ast.Ident)
			return isID && local[id.Name]
		case *ast.ArrayType:
			id, isID := e.Elt.(*ast.Ident)
			return e.Len == nil && isID && id.Name == "byte"
		}
		return false
	}
	checkFunc := func(name string, ft *ast.FuncType) {
		for _, p := range ft.Params.List {
			if !ok(p.Type) {
				t.Errorf("%s: parameter type %s is not bindable", name, types.ExprString(p.Type))
			}
		}
		if ft.Results == nil {
			return
		}
		var n int
		for _, r := range ft.Results.List {
			n += max(1, len(r.Names))
			if !ok(r.Type) {
				t.Errorf("%s: result type %s is not bindable", name, types.ExprString(r.Type))
			}
		}
		last := ft.Results.List[len(ft.Results.List)-1].Type
		if n > 2 || n == 2 && types.ExprString(last) != "error" {
			t.Errorf("%s: gomobile allows one result, or a result and an error", name)
		}
	}
	for _, f := range pkg.Files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					recv := d.Recv.List[0].Type
					if s, isStar := recv.(*ast.StarExpr); isStar {
						recv = s.X
					}
					if !recv.(*ast.Ident).IsExported() {
						continue // gomobile binds no unexported type
					}
					name = recv.(*ast.Ident).Name + "." + name
				}
				checkFunc(name, d.Type)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, isType := s.(*ast.TypeSpec)
					if !isType || !ts.Name.IsExported() {
						continue
					}
					if it, isIface := ts.Type.(*ast.InterfaceType); isIface {
						// An interface the app implements (a callback).
						for _, m := range it.Methods.List {
							ft, isFunc := m.Type.(*ast.FuncType)
							if !isFunc || len(m.Names) != 1 {
								t.Errorf("interface %s: embeds %s", ts.Name.Name, types.ExprString(m.Type))
								continue
							}
							checkFunc(ts.Name.Name+"."+m.Names[0].Name, ft)
						}
						continue
					}
					st, isStruct := ts.Type.(*ast.StructType)
					if !isStruct {
						t.Errorf("type %s: only structs are exported here", ts.Name.Name)
						continue
					}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							if n.IsExported() && !ok(fl.Type) {
								t.Errorf("%s.%s: field type %s is not bindable", ts.Name.Name, n.Name, types.ExprString(fl.Type))
							}
						}
					}
				}
			}
		}
	}
}

func TestClient(t *testing.T) {
	o := &Options{Dir: t.TempDir(), Key: bytes.Repeat([]byte{3}, 32)}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Record("sku-1", Purchase, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Record("sku-1", 42, 0, 0); ErrorCode(errString(err)) != CodeInvalid {
		t.Errorf("Record(bad kind) = %v, want code %s", err, CodeInvalid)
	}
	if err := c.Record("sku-1", Rating, 99, 0); ErrorCode(errString(err)) != CodeInvalid {
		t.Errorf("Record(rating 99) = %v, want code %s", err, CodeInvalid)
	}
	if _, err := c.Recommend(5, false); ErrorCode(errString(err)) != CodeNoModel {
		t.Errorf("Recommend without a model = %v, want code %s", err, CodeNoModel)
	}
	if err := c.Participate(); ErrorCode(errString(err)) != CodeNoFederation {
		t.Errorf("Participate = %v, want code %s", err, CodeNoFederation)
	}
	if err := c.OptIn(); err != nil || !c.OptedIn() {
		t.Fatalf("OptIn = %v, OptedIn = %v", err, c.OptedIn())
	}
	s, err := c.ReportJSON()
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		OptedIn      bool `json:"opted_in"`
		Interactions int  `json:"interactions_stored"`
	}
	if err := json.Unmarshal([]byte(s), &rep); err != nil || !rep.OptedIn || rep.Interactions != 1 {
		t.Errorf("ReportJSON = %s (%v)", s, err)
	}
	if err := c.DeleteMyData(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(o.Dir); len(ents) != 0 {
		t.Errorf("%d files left after DeleteMyData", len(ents))
	}
	if c.OptedIn() {
		t.Errorf("opted in after DeleteMyData")
	}
	c.Close()
	o.Key[0] ^= 1
	c2, err := New(o)
	if err != nil {
		t.Fatalf("New on an empty directory with another key = %v", err)
	}
	c2.Close()
}

func TestErrorCode(t *testing.T) {
	tests := map[string]string{
		"fedrec/corrupt: client: local store is corrupt": CodeCorrupt,
		"fedrec/no_round: x":                             CodeNoRound,
		"something else":                                 "",
		"fedrec/nocolon":                                 "",
	}
	for msg, want := range tests {
		if got := ErrorCode(msg); got != want {
			t.Errorf("ErrorCode(%q) = %q, want %q", msg, got, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestNetworkOptions(t *testing.T) {
	base := Options{Dir: t.TempDir(), Key: make([]byte, 32), Coordinators: "127.0.0.1:7001", ClientID: "device-1", Catalogue: "a\nb\n"}
	tests := []struct {
		name string
		mod  func(o *Options)
	}{
		{"no CA", func(o *Options) {}},
		{"bad CA", func(o *Options) { o.CACertPEM = []byte("not a certificate") }},
	}
	for _, tt := range tests {
		o := base
		tt.mod(&o)
		if c, err := New(&o); err == nil {
			c.Close()
			t.Errorf("New with %s succeeded, want an error", tt.name)
		}
	}
}
