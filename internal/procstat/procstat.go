// Package procstat reads a Linux process's memory figures from its
// status file (/proc/<pid>/status).
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Bytes is a field of the status file of process pid ("self" for this
// one) in bytes: "RssAnon", "RssFile", "VmRSS" and the like.
func Bytes(pid, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	return parse(string(data), field)
}

func parse(status, field string) (int64, error) {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest) // "123456 kB"
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in the process status", field)
}
