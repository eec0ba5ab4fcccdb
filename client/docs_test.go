package client_test

import (
	"os"
	"strings"
	"testing"
)

// TestDocsQuoteShopExample: docs/sdk.md quotes Example_shopEndToEnd as it
// runs, so that the guide's code is the code the test checks.
func TestDocsQuoteShopExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/sdk.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("shop_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	i, j := strings.Index(s, "\t// A one-node implicit cluster on loopback"), strings.Index(s, "\t// Output:")
	if i < 0 || j < i {
		t.Fatal("Example_shopEndToEnd's body not found")
	}
	var body strings.Builder
	for line := range strings.Lines(strings.TrimRight(s[i:j], "\n\t") + "\n") {
		body.WriteString(strings.TrimPrefix(line, "\t"))
	}
	if !strings.Contains(string(doc), "```go\n"+body.String()+"```") {
		t.Errorf("docs/sdk.md does not quote Example_shopEndToEnd's body as it is; copy it from client/shop_example_test.go")
	}
}
