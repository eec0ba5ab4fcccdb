package main

// What each node of the deployment examples can read: the certificates
// directory built by following docs/deploy/README.md literally.

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fedrec/fedrec/coordinator/pki"
)

// shellWords splits a command line as sh would, for the simple quoting the
// docs use (single and double quotes, no escapes or expansions).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case r == '#':
			if !in {
				return words
			}
			cur.WriteRune(r)
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// readmeSection returns the shell commands of docs/deploy/README.md's
// section titled title (its ```sh blocks, one command a line).
func readmeSection(t *testing.T, title string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sect, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	sect, _, _ = strings.Cut(sect, "\n## ")
	var cmds [][]string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(sect, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			if w := shellWords(line); len(w) > 0 {
				cmds = append(cmds, w)
			}
		}
	}
	return cmds
}

// runCertLine runs a README's 'fedrec cert' command with its --dir under
// root.
func runCertLine(t *testing.T, root string, words []string) {
	t.Helper()
	args := slices.Clone(words[1:])
	for i := range args {
		if i > 0 && args[i-1] == "--dir" {
			args[i] = filepath.Join(root, args[i])
		}
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), args, &out, &errb); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(words, " "), err, errb.String())
	}
}

// checkNodeDir checks a node's certificates directory: the node's
// certificate and key, both CA certificates, no CA key, and that the node
// starts with it (device authentication on).
func checkNodeDir(t *testing.T, where, dir, certName, host string) {
	t.Helper()
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, f := range []string{pki.CAKeyFile, pki.DeviceCAKeyFile} {
		if slices.Contains(names, f) {
			t.Errorf("%s: a node can read %s, a CA's private key", where, f)
		}
	}
	for _, f := range names {
		if strings.HasSuffix(f, "-key.pem") && f != pki.KeyFile(certName) {
			t.Errorf("%s: a node can read %s, a key that is not its own", where, f)
		}
	}
	for _, f := range []string{pki.CAFile, pki.DeviceCAFile, pki.CertFile(certName), pki.KeyFile(certName)} {
		if !slices.Contains(names, f) {
			t.Errorf("%s: a node cannot read %s (it has %v)", where, f, names)
		}
	}
	b, err := pki.Load(dir, certName)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if b.Devices == nil {
		t.Errorf("%s: the node has no device CA: it would refuse to start", where)
	}
	if err := b.Cert.Leaf.VerifyHostname(host); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

func TestDeployNodeFiles(t *testing.T) {
	t.Run("kubernetes", func(t *testing.T) {
		root := t.TempDir()
		secrets := map[string]map[string]string{} // name → key → file
		for _, w := range readmeSection(t, "Kubernetes") {
			switch {
			case w[0] == "fedrec" && len(w) > 1 && w[1] == "cert":
				runCertLine(t, root, w)
			case w[0] == "kubectl" && slices.Contains(w, "secret") && slices.Contains(w, "generic"):
				name := w[slices.Index(w, "generic")+1]
				secrets[name] = map[string]string{}
				for _, a := range w {
					f, ok := strings.CutPrefix(a, "--from-file=")
					if !ok {
						continue
					}
					path := filepath.Join(root, f)
					if st, err := os.Stat(path); err == nil && st.IsDir() {
						// kubectl takes every file of a directory.
						es, _ := os.ReadDir(path)
						for _, e := range es {
							secrets[name][e.Name()] = filepath.Join(path, e.Name())
						}
					} else {
						secrets[name][filepath.Base(f)] = path
					}
				}
			}
		}
		sts := kubeObject(t, "kubernetes/statefulset.yaml", "StatefulSet")
		pod := at(t, sts, "spec", "template", "spec")
		c := at(t, pod, "containers", 0)
		script := strings.Join(func() []string {
			var s []string
			for _, a := range at(t, c, "args").([]any) {
				s = append(s, a.(string))
			}
			return s
		}(), " ")
		certsDir := regexp.MustCompile(`--certs (\S+)`).FindStringSubmatch(script)
		certName := regexp.MustCompile(`--cert-name (\S+)`).FindStringSubmatch(script)
		if certsDir == nil || certName == nil {
			t.Fatal("the container does not pass --certs and --cert-name")
		}
		// Every secret volume mounted at --certs, projected as the pod sees it.
		dir := filepath.Join(root, "pod")
		os.MkdirAll(dir, 0o700)
		mounted := false
		for _, m := range at(t, c, "volumeMounts").([]any) {
			if at(t, m, "mountPath") != certsDir[1] {
				continue
			}
			for _, v := range at(t, pod, "volumes").([]any) {
				if at(t, v, "name") != at(t, m, "name") {
					continue
				}
				name := at(t, v, "secret", "secretName").(string)
				sec, ok := secrets[name]
				if !ok {
					t.Fatalf("the README creates no Secret %s", name)
				}
				mounted = true
				files := map[string]string{}
				if items, ok := v.(map[string]any)["secret"].(map[string]any)["items"].([]any); ok {
					for _, it := range items {
						files[at(t, it, "path").(string)] = sec[at(t, it, "key").(string)]
					}
				} else {
					files = sec
				}
				for path, src := range files {
					b, err := os.ReadFile(src)
					if err != nil {
						t.Fatalf("Secret %s: %v", name, err)
					}
					os.WriteFile(filepath.Join(dir, path), b, 0o600)
				}
			}
		}
		if !mounted {
			t.Fatalf("no Secret is mounted at --certs %s", certsDir[1])
		}
		checkNodeDir(t, "statefulset.yaml", dir, certName[1], "fedrec-1.fedrec.fedrec.svc.cluster.local")
	})

	t.Run("systemd", func(t *testing.T) {
		root := t.TempDir()
		var install []string
		for _, w := range readmeSection(t, "systemd") {
			switch {
			case w[0] == "fedrec" && len(w) > 1 && w[1] == "cert":
				runCertLine(t, root, w)
			case w[0] == "install" && strings.HasPrefix(w[len(w)-1], "/etc/fedrec/certs") && !slices.Contains(w, "-d"):
				install = w
			}
		}
		if install == nil {
			t.Fatal("the systemd section installs no certificates into /etc/fedrec/certs")
		}
		dir := filepath.Join(root, "etc-fedrec-certs")
		os.MkdirAll(dir, 0o700)
		for i, a := range install[1 : len(install)-1] {
			if strings.HasPrefix(a, "-") || install[i] == "-m" || install[i] == "-g" {
				continue // options and their values
			}
			b, err := os.ReadFile(filepath.Join(root, a))
			if err != nil {
				t.Fatalf("install %s: %v", a, err)
			}
			os.WriteFile(filepath.Join(dir, filepath.Base(a)), b, 0o600)
		}
		unit, err := os.ReadFile(filepath.Join(deployDir, "systemd/fedrec-coordinator.service"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(unit, []byte("--certs /etc/fedrec/certs ")) {
			t.Error("the unit does not pass --certs /etc/fedrec/certs")
		}
		env, err := os.ReadFile(filepath.Join(deployDir, "systemd/coordinator.env.example"))
		if err != nil {
			t.Fatal(err)
		}
		id := regexp.MustCompile(`--id (\S+)`).FindSubmatch(env)
		if id == nil {
			t.Fatal("coordinator.env.example passes no --id")
		}
		checkNodeDir(t, "systemd", dir, string(id[1]), string(id[1])+".example.net")
	})
}

// The alerts' advice names only actions that exist: the training
// settings are fixed when a cluster is founded, so no alert may say to
// raise or lower one; and an alert that fires on every cluster without
// differential privacy (the README's) does not page.
// changeableSettings are the training settings 'fedrec training set' can
// change on a running cluster (coordinator.State.changeTraining).
var changeableSettings = map[string]bool{
	"clients-per-round": true, "min-clients": true, "checkin-window": true,
	"round-timeout": true, "secagg-phase": true, "noise-multiplier": true,
}

func TestAlertsNameOnlyPossibleActions(t *testing.T) {
	doc, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	verb := regexp.MustCompile(`(?i)\b(raise|lower|increase|decrease|reduce|shorten|lengthen|change)\b`)
	for _, sentence := range regexp.MustCompile(`[.;:!?]\s`).Split(string(doc), -1) {
		if !verb.MatchString(sentence) {
			continue
		}
		for _, s := range settings {
			changeable := changeableSettings[s.flag] && strings.Contains(sentence, "fedrec training set")
			if s.training && strings.Contains(sentence, "`--"+s.flag+"`") && !strings.Contains(sentence, "cannot change") && !changeable {
				t.Errorf("docs/alerts.md advises changing --%s, which a running cluster cannot change (only %v may, through fedrec training set):\n%s", s.flag, changeableSettings, sentence)
			}
		}
	}
	for _, g := range at(t, yamlDocs(t, "prometheus/alerts.yaml")[0], "groups").([]any) {
		for _, r := range at(t, g, "rules").([]any) {
			expr := at(t, r, "expr").(string)
			sev := at(t, r, "labels", "severity")
			if strings.Contains(expr, "fedrec_privacy_epsilon) == +Inf") && sev == "critical" {
				t.Errorf("alert %s pages (critical) on every cluster without differential privacy", at(t, r, "alert"))
			}
			for _, p := range []string{"noise-multiplier", "min-clients", "round-timeout", "clients-per-round"} {
				if summary := at(t, r, "annotations", "summary").(string); verb.MatchString(summary) && strings.Contains(summary, p) && !strings.Contains(summary, "fedrec training set") {
					t.Errorf("alert %s's summary advises changing --%s", at(t, r, "alert"), p)
				}
			}
		}
	}
}
