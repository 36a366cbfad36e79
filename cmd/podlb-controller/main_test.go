package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token file that cannot serve a token stops the start, before any
// connection, with an error that names the flag and the file.
func TestAMissingOrEmptyTokenFileStopsTheStartNamingTheFlag(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(dir, "absent"), empty} {
		err := run([]string{"--cluster-name=c", "--kubeconfig=" + kubeconfig, "--gcp-project=p",
			"--gcp-endpoint=https://compute-myendpoint.p.googleapis.com", "--gcp-access-token-file=" + file})
		if err == nil || !strings.Contains(err.Error(), "--gcp-access-token-file") || !strings.Contains(err.Error(), file) {
			t.Errorf("token file %s: %v, want an error naming the flag and the file", file, err)
		}
	}
}

func TestAKubernetesBudgetOfNothingStopsTheStartNamingTheFlags(t *testing.T) {
	for _, args := range [][]string{{"--kube-api-qps=0"}, {"--kube-api-qps=-1"}, {"--kube-api-burst=0"}} {
		err := run(append([]string{"--cluster-name=c"}, args...))
		if err == nil || !strings.Contains(err.Error(), "--kube-api-qps") || !strings.Contains(err.Error(), "--kube-api-burst") {
			t.Errorf("%v: %v, want an error naming the flags", args, err)
		}
	}
}
