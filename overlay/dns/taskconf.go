package dns

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// TaskResolvConf is the resolv.conf of a task that asks for search domains
// or options (docker's --dns-search, --dns-option): the embedded resolver
// stays its nameserver, and its options come after ndots:0 unless they set
// ndots themselves.
func TaskResolvConf(search, options []string) string {
	var b strings.Builder
	b.WriteString("nameserver " + ListenAddr + "\n")
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	opts := []string{"ndots:0"}
	if slices.ContainsFunc(options, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		opts = nil
	}
	fmt.Fprintf(&b, "options %s\n", strings.Join(append(opts, options...), " "))
	return b.String()
}

// WriteTaskResolvConf writes TaskResolvConf to path.
func WriteTaskResolvConf(path string, search, options []string) error {
	if err := os.WriteFile(path, []byte(TaskResolvConf(search, options)), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}
