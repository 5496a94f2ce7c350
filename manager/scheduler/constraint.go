package scheduler

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// ErrInvalidConstraint is wrapped by every ParseConstraint error.
var ErrInvalidConstraint = errors.New("scheduler: invalid constraint")

// Operator compares a node attribute with a constraint's value.
type Operator int

const (
	// OpEqual is "==": the attribute must equal the value.
	OpEqual Operator = iota
	// OpNotEqual is "!=": the attribute must differ (a missing label differs).
	OpNotEqual
)

// String returns "==" or "!=".
func (o Operator) String() string {
	if o == OpNotEqual {
		return "!="
	}
	return "=="
}

type attribute int

const (
	attrID attribute = iota
	attrHostname
	attrRole
	attrLabel
	attrOS
	attrArch
)

// Constraint is a parsed placement constraint such as "node.labels.zone==a".
type Constraint struct {
	// Key is the attribute as written, lower-cased up to the label name:
	// node.id, node.hostname, node.role, node.labels.NAME,
	// node.platform.os or node.platform.arch.
	Key   string
	Op    Operator
	Value string

	attr  attribute
	label string
}

// String gives the constraint back in its canonical form.
func (c Constraint) String() string { return c.Key + c.Op.String() + c.Value }

// Match reports whether node n satisfies the constraint. Values are compared
// case-insensitively; a missing label fails == and passes !=.
func (c Constraint) Match(n *api.Node) bool {
	var have string
	switch c.attr {
	case attrID:
		have = n.ID
	case attrHostname:
		have = n.Description.Hostname
	case attrRole:
		have = string(n.Spec.Role)
	case attrOS:
		have = n.Description.OS
	case attrArch:
		have = n.Description.Arch
	case attrLabel:
		v, ok := n.Spec.Labels[c.label]
		if !ok {
			return c.Op == OpNotEqual
		}
		have = v
	}
	return strings.EqualFold(have, c.Value) == (c.Op == OpEqual)
}

var fixedKeys = map[string]attribute{
	"node.id":            attrID,
	"node.hostname":      attrHostname,
	"node.role":          attrRole,
	"node.platform.os":   attrOS,
	"node.platform.arch": attrArch,
}

const labelPrefix = "node.labels."

// ParseConstraint parses "KEY==VALUE" or "KEY!=VALUE". Use it to validate
// service specs at create time: its errors wrap ErrInvalidConstraint and say
// what is wrong.
func ParseConstraint(expr string) (Constraint, error) {
	bad := func(why string, args ...any) (Constraint, error) {
		return Constraint{}, fmt.Errorf("%w %q: %s", ErrInvalidConstraint, expr, fmt.Sprintf(why, args...))
	}
	if strings.TrimSpace(expr) == "" {
		return bad("empty")
	}
	eq, ne := strings.Index(expr, "=="), strings.Index(expr, "!=")
	var c Constraint
	var at int
	switch {
	case eq < 0 && ne < 0:
		return bad("want KEY==VALUE or KEY!=VALUE")
	case ne < 0 || (eq >= 0 && eq < ne):
		c.Op, at = OpEqual, eq
	default:
		c.Op, at = OpNotEqual, ne
	}
	key := strings.TrimSpace(expr[:at])
	c.Value = strings.TrimSpace(expr[at+2:])
	switch {
	case key == "":
		return bad("missing key before %s", c.Op)
	case c.Value == "":
		return bad("missing value after %s", c.Op)
	case strings.Contains(c.Value, "==") || strings.Contains(c.Value, "!="):
		return bad("more than one operator")
	}
	lower := strings.ToLower(key)
	if attr, ok := fixedKeys[lower]; ok {
		c.Key, c.attr = lower, attr
	} else if strings.HasPrefix(lower, labelPrefix) {
		c.label = key[len(labelPrefix):]
		if c.label == "" {
			return bad("missing label name after %s", labelPrefix)
		}
		c.Key, c.attr = labelPrefix+c.label, attrLabel
	} else {
		return bad("unknown key %q (want node.id, node.hostname, node.role, node.labels.NAME, node.platform.os or node.platform.arch)", key)
	}
	if c.attr == attrRole && !strings.EqualFold(c.Value, string(api.RoleManager)) && !strings.EqualFold(c.Value, string(api.RoleWorker)) {
		return bad("node.role is %s or %s, not %q", api.RoleManager, api.RoleWorker, c.Value)
	}
	return c, nil
}

// ParseConstraints parses every expression and stops at the first error.
func ParseConstraints(exprs []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := ParseConstraint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
