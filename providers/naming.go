package providers

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// NamePart reduces s to lowercase letters, digits and inner hyphens, at
// most n characters, for readable prefixes in cloud resource names.
func NamePart(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[:max(n, 0)]
	}
	return strings.Trim(out, "-")
}

// BindingHash is n hex digits of a hash of cluster, namespace, Service and
// port: appended to truncated names, it keeps generated cloud names unique
// per binding and per cluster.
func BindingHash(cluster string, key BindingKey, n int) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{cluster, key.Namespace, key.Service, strconv.Itoa(int(key.Port))}, "/")))
	return hex.EncodeToString(sum[:])[:n]
}
