package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Binaries.

// BinaryEnv names the directory holding kube-apiserver, kube-controller-manager,
// kube-scheduler and etcd; the Makefile exports it to tests.
const BinaryEnv = "PODLB_K8S_BIN"

var requiredBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// BinaryDir finds the control-plane binaries: $PODLB_K8S_BIN, else the
// nearest bin/k8s above the working directory.
func BinaryDir() (string, error) {
	if dir := os.Getenv(BinaryEnv); dir != "" {
		if err := checkBinaries(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinaryEnv, dir, err)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		candidate := filepath.Join(dir, "bin", "k8s")
		if checkBinaries(candidate) == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("control-plane binaries not found: set %s or run `make tools` (looked for bin/k8s/{%s} above %s)",
				BinaryEnv, strings.Join(requiredBinaries, ","), wd)
		}
		dir = parent
	}
}

func checkBinaries(dir string) error {
	var missing []string
	for _, b := range requiredBinaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s in %s (run `make tools`)", strings.Join(missing, ", "), dir)
	}
	return nil
}
