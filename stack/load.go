package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"
	yaml "go.yaml.in/yaml/v4"
)

// Options say what to load.
type Options struct {
	// Files are the compose files, merged in order (later ones win).
	Files []string
	// Env is the environment ${VAR} is interpolated from (KEY=VALUE), on
	// top of the .env file next to the first file.
	Env []string
	// Namespace is the stack's name (the project name).
	Namespace string
}

// Loaded is a parsed, merged and checked set of compose files.
type Loaded struct {
	Project *types.Project
	// Ignored are the keys Swarm ignores too, one entry per key name
	// (docker's "Ignoring unsupported options").
	Ignored []string
}

var namespaceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// CheckNamespace refuses a stack name that cannot prefix service and
// network names.
func CheckNamespace(ns string) error {
	if !namespaceRE.MatchString(ns) || len(ns) > 40 {
		return fmt.Errorf("stack name %q: want 1-40 lower-case letters, digits, dashes or underscores, starting with a letter or digit", ns)
	}
	return nil
}

// Load reads, merges and interpolates the files as docker compose does
// (extends, x- fields and version 3.x accepted), validates them against
// the compose specification, and refuses keys Shoal does not support,
// naming each one's file and line. Keys Swarm ignores are listed in
// Ignored.
func Load(ctx context.Context, o Options) (*Loaded, error) {
	if len(o.Files) == 0 {
		return nil, errors.New("no compose file given (-c FILE)")
	}
	if err := CheckNamespace(o.Namespace); err != nil {
		return nil, err
	}
	for _, f := range o.Files {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("compose file: %w", err)
		}
	}
	var findings []loader.UnsupportedAttribute
	popts, err := cli.NewProjectOptions(o.Files,
		cli.WithName(o.Namespace),
		cli.WithWorkingDirectory(filepath.Dir(o.Files[0])),
		cli.WithEnv(o.Env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithLoadOptions(
			loader.WithSupportedAttributes(supported, func(f []loader.UnsupportedAttribute) { findings = f }),
			func(lo *loader.Options) { lo.ResourceLoaders = nil },
		),
	)
	if err != nil {
		return nil, fmt.Errorf("compose files: %w", err)
	}
	p, err := popts.LoadProject(ctx)
	if err != nil {
		return nil, locate(o.Files, err)
	}
	l := &Loaded{Project: p}
	var unsupported []string
	for _, f := range findings {
		if name, ok := ignoredKey(f.Path); ok {
			if !slices.Contains(l.Ignored, name) {
				l.Ignored = append(l.Ignored, name)
			}
			continue
		}
		unsupported = append(unsupported, fmt.Sprintf("%s: %s: not supported by Shoal", where(o.Files, f.Path), f.Path.String()))
	}
	slices.Sort(l.Ignored)
	if len(unsupported) > 0 {
		// What the mapping refuses too, so that one run names everything.
		if _, err := Convert(p, o.Namespace); err != nil {
			unsupported = append(unsupported, err.Error())
		}
		return nil, errors.New(strings.Join(unsupported, "\n"))
	}
	return l, nil
}

// schemaErr matches compose-go's schema errors: the dotted path, then why.
var (
	schemaErr  = regexp.MustCompile(`^validating (\S+): (\S+) (.*)$`)
	interpErr  = regexp.MustCompile(`^error while interpolating (\S+): (.*)$`)
	additional = regexp.MustCompile(`additional propert(?:y|ies) (.*) not allowed`)
	quoted     = regexp.MustCompile(`'([^']*)'`)
)

// locate adds the file and line to a schema validation error of compose-go,
// which names the dotted path only.
func locate(files []string, err error) error {
	m := schemaErr.FindStringSubmatch(err.Error())
	if m == nil {
		if m = interpErr.FindStringSubmatch(err.Error()); m == nil {
			return err
		}
		m = []string{m[0], "", m[1], m[2]}
	}
	path, why := m[2], m[3]
	if a := additional.FindStringSubmatch(why); a != nil {
		var keys []string
		for _, q := range quoted.FindAllStringSubmatch(a[1], -1) {
			keys = append(keys, q[1])
		}
		if len(keys) > 0 {
			var out []string
			for _, k := range keys {
				p := tree.Path(path).Next(k)
				if path == "" || path == "(root)" {
					p = tree.NewPath(k)
				}
				out = append(out, fmt.Sprintf("%s: %s: unknown key %q", where(files, p), p.String(), k))
			}
			return errors.New(strings.Join(out, "\n"))
		}
	}
	if why == "false schema" { // a key matching no property of the specification
		return fmt.Errorf("%s: %s: unknown key %q", where(files, tree.Path(path)), path, tree.Path(path).Last())
	}
	return fmt.Errorf("%s: %s: %s", where(files, tree.Path(path)), path, why)
}

// where is FILE:LINE of the last file (the one that wins a merge) that
// has p, or the first file when none has it (it came from extends).
func where(files []string, p tree.Path) string {
	for i := len(files) - 1; i >= 0; i-- {
		if line := findLine(files[i], p.Parts()); line > 0 {
			return fmt.Sprintf("%s:%d", files[i], line)
		}
	}
	return files[0]
}

// findLine walks the YAML nodes of file along parts ("[]" or a number
// matches list items, "*" any key) and returns the line of the last key
// found, 0 if the path is not in the file.
func findLine(file string, parts []string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 {
		return 0
	}
	return walk(doc.Content[0], parts)
}

func walk(n *yaml.Node, parts []string) int {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if len(parts) == 0 {
		return n.Line
	}
	part := strings.ReplaceAll(parts[0], "👻", ".")
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Value == "<<" { // merge key: look inside the merged mappings
				if line := walk(n.Content[i+1], parts); line > 0 {
					return line
				}
				continue
			}
			if part != "*" && k.Value != part {
				continue
			}
			if len(parts) == 1 {
				return k.Line
			}
			if line := walk(n.Content[i+1], parts[1:]); line > 0 {
				return line
			}
		}
		if part == "[]" { // a list in canonical form may be a mapping in the file
			for i := 1; i < len(n.Content); i += 2 {
				if line := walk(n.Content[i], parts[1:]); line > 0 {
					return line
				}
			}
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if part == "[]" || part == "*" || isIndex(part) {
				if len(parts) == 1 {
					return item.Line
				}
				if line := walk(item, parts[1:]); line > 0 {
					return line
				}
			} else if item.Kind == yaml.ScalarNode && (item.Value == part || strings.HasPrefix(item.Value, part+"=")) {
				// a list form of a mapping: networks: [a], labels: [k=v]
				return item.Line
			}
		}
	}
	return 0
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
