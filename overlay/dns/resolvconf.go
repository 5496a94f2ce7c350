package dns

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// ResolvConf is the resolv.conf a task gets, bind-mounted at /etc/resolv.conf.
const ResolvConf = "nameserver " + ListenAddr + "\noptions ndots:0\n"

// WriteResolvConf writes ResolvConf to path, for bind-mounting into a container.
func WriteResolvConf(path string) error {
	if err := os.WriteFile(path, []byte(ResolvConf), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// HostUpstreams returns the nameservers of the resolv.conf file at resolvConf as "ip:53",
// for Start's upstream. Loopback nameservers (127.0.0.0/8 and ::1, such as systemd-resolved's
// 127.0.0.53) and scoped link-local ones are skipped: the resolver forwards from inside the
// task netns, where the host's loopback and links are unreachable. On a systemd-resolved host
// pass /run/systemd/resolve/resolv.conf, which lists the real servers. An unreadable file
// gives no upstreams, so unknown names get SERVFAIL.
func HostUpstreams(resolvConf string) []string {
	data, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil
	}
	var ups []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		up := net.JoinHostPort(a.String(), "53")
		if !slices.Contains(ups, up) {
			ups = append(ups, up)
		}
	}
	return ups
}
