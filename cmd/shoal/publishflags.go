package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-dev/shoal/api"
)

// parsePublish reads --publish in docker's two forms:
//
//	[IP:]PUBLISHED:TARGET[/PROTOCOL]      8080:80, 53:53/udp, 10.0.0.5:8080:80 (ingress mode)
//	mode=host,published=443,target=8443[,protocol=udp][,published_ip=10.0.0.5]
//
// In the long form published may carry the address too (published=10.0.0.5:8080).
func parsePublish(s string) (api.PortConfig, error) {
	if strings.Contains(s, "=") {
		return parsePublishLong(s)
	}
	bad := func(why string) (api.PortConfig, error) {
		return api.PortConfig{}, fmt.Errorf("--publish %q: %s", s, why)
	}
	ports, proto, hasProto := strings.Cut(s, "/")
	p := api.PortConfig{Protocol: api.ProtocolTCP}
	if hasProto {
		switch strings.ToLower(proto) {
		case api.ProtocolTCP, api.ProtocolUDP:
			p.Protocol = strings.ToLower(proto)
		default:
			return bad(fmt.Sprintf("protocol %q: want tcp or udp", proto))
		}
	}
	parts := strings.Split(ports, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := parseHostIP(parts[0])
		if err != nil {
			return bad(err.Error())
		}
		p.PublishedIP, parts = ip, parts[1:]
	default:
		return bad("want [IP:]PUBLISHED:TARGET[/tcp|udp], like 8080:80, or mode=host,published=443,target=8443")
	}
	for _, c := range []struct {
		name, val string
		dst       *uint16
	}{{"published", parts[0], &p.Published}, {"target", parts[1], &p.Target}} {
		n, err := parsePort(c.name, c.val)
		if err != nil {
			return bad(err.Error())
		}
		*c.dst = n
	}
	return p, nil
}

// parsePublishLong reads the KEY=VALUE form.
func parsePublishLong(s string) (api.PortConfig, error) {
	bad := func(why string) (api.PortConfig, error) {
		return api.PortConfig{}, fmt.Errorf("--publish %q: %s", s, why)
	}
	p := api.PortConfig{Protocol: api.ProtocolTCP}
	seen := map[string]bool{}
	for _, field := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(field, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return bad(fmt.Sprintf("%q: want KEY=VALUE (mode, published, target, protocol, published_ip)", field))
		}
		if seen[k] {
			return bad(fmt.Sprintf("%s given twice", k))
		}
		seen[k] = true
		var err error
		switch k {
		case "mode":
			switch m := api.PublishMode(strings.ToLower(v)); m {
			case api.PublishIngress, api.PublishHost:
				p.PublishMode = m
			default:
				return bad(fmt.Sprintf("mode %q: want ingress or host", v))
			}
		case "published":
			if i := strings.LastIndex(v, ":"); i >= 0 {
				if seen["published_ip"] {
					return bad("the address is given twice (published_ip and published=IP:PORT)")
				}
				seen["published_ip"] = true
				if p.PublishedIP, err = parseHostIP(v[:i]); err != nil {
					return bad(err.Error())
				}
				v = v[i+1:]
			}
			p.Published, err = parsePort("published", v)
		case "target":
			p.Target, err = parsePort("target", v)
		case "protocol":
			switch strings.ToLower(v) {
			case api.ProtocolTCP, api.ProtocolUDP:
				p.Protocol = strings.ToLower(v)
			default:
				err = fmt.Errorf("protocol %q: want tcp or udp", v)
			}
		case "published_ip":
			p.PublishedIP, err = parseHostIP(v)
		default:
			return bad(fmt.Sprintf("unknown key %q: want mode, published, target, protocol or published_ip", k))
		}
		if err != nil {
			return bad(err.Error())
		}
	}
	if p.Target == 0 {
		return bad("target is required")
	}
	if p.Published == 0 {
		return bad("published is required (Shoal does not pick a port)")
	}
	return p, nil
}

func parsePort(name, v string) (uint16, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s port %q: want a number from 1 to 65535", name, v)
	}
	return uint16(n), nil
}

// parseHostIP reads the address a port is bound on: IPv4, optionally in
// brackets; 0.0.0.0 means every address.
func parseHostIP(v string) (string, error) {
	a, err := netip.ParseAddr(strings.Trim(v, "[]"))
	switch {
	case err != nil:
		return "", fmt.Errorf("published IP %q: not an IP address", v)
	case !a.Unmap().Is4():
		return "", fmt.Errorf("published IP %s: only IPv4 addresses can be published on", v)
	case a.IsUnspecified():
		return "", nil
	}
	return a.Unmap().String(), nil
}

// publishKey names a port for duplicate checks: [IP:]PUBLISHED/PROTOCOL.
func publishKey(p api.PortConfig) string {
	key := fmt.Sprintf("%d/%s", p.Published, p.Proto())
	if p.PublishedIP != "" {
		key = p.PublishedIP + ":" + key
	}
	return key
}

// checkPorts runs the API's checks on a copy of ports, so the CLI refuses
// what the managers would.
func checkPorts(ports []api.PortConfig) error {
	return api.NormalizePorts(slices.Clone(ports))
}

// publishMatcher matches the published ports --publish-rm s names:
// [IP:]PUBLISHED[/PROTO] or [IP:]PUBLISHED:TARGET[/PROTO], tcp unless said;
// without IP it matches the port on any address.
func publishMatcher(s string) func(api.PortConfig) bool {
	ports, proto, _ := strings.Cut(s, "/")
	parts := strings.Split(ports, ":")
	ip := ""
	if len(parts) == 3 || len(parts) == 2 && strings.Contains(parts[0], ".") {
		ip, parts = parts[0], parts[1:]
	}
	published, target, hasTarget := parts[0], "", len(parts) > 1
	if hasTarget {
		target = parts[1]
	}
	if proto == "" {
		proto = api.ProtocolTCP
	}
	return func(p api.PortConfig) bool {
		return strconv.Itoa(int(p.Published)) == published && strings.EqualFold(p.Proto(), proto) &&
			(!hasTarget || strconv.Itoa(int(p.Target)) == target) && (ip == "" || ip == p.PublishedIP)
	}
}

// portsColumn is the PORTS column of service ls, as docker's:
// *:8080->80/tcp, 10.0.0.5:8080->80/tcp, and (host) after host-mode ports.
func portsColumn(ports []api.PortConfig) string {
	if len(ports) == 0 {
		return "-"
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		ip := p.PublishedIP
		if ip == "" {
			ip = "*"
		}
		out[i] = fmt.Sprintf("%s:%d->%d/%s", ip, p.Published, p.Target, p.Proto())
		if p.Mode() == api.PublishHost {
			out[i] += " (host)"
		}
	}
	return strings.Join(out, ", ")
}
