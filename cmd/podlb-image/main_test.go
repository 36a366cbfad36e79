package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podlb/podlb/internal/ociimage"
)

const (
	testVersion  = "image-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	testEpoch    = "1700000000"
	hostCACerts  = "/etc/ssl/certs/ca-certificates.crt"
)

// The whole filesystem of the image: anything more (a shell, a package
// manager, a writable /tmp) is a regression.
var wantFiles = []string{
	"etc/",
	"etc/group",
	"etc/passwd",
	"etc/ssl/",
	"etc/ssl/certs/",
	"etc/ssl/certs/ca-certificates.crt",
	"home/",
	"home/nonroot/",
	"podlb-controller",
}

func TestImageArchiveIsReproducibleAndHoldsOnlyTheNonRootController(t *testing.T) {
	if _, err := os.Stat(hostCACerts); err != nil {
		t.Skipf("no CA bundle on this machine to put in the image: %v", err)
	}
	dir := t.TempDir()
	binary := buildController(t, dir)
	platform := "linux/" + runtime.GOARCH
	name := fmt.Sprintf("podlb-controller:test-%d", time.Now().UnixNano())

	// Two builds of the same inputs must give the same bytes.
	var archives [2]string
	var outputs [2]string
	for i := range archives {
		archives[i] = filepath.Join(dir, fmt.Sprintf("image-%d.oci.tar", i))
		var out bytes.Buffer
		err := run([]string{
			"--binary", platform + "=" + binary,
			"--ca-certs", hostCACerts,
			"--version", testVersion,
			"--revision", testRevision,
			"--name", name,
			"--out", archives[i],
		}, func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return testEpoch
			}
			return ""
		}, &out)
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
		outputs[i] = out.String()
	}
	first, err := os.ReadFile(archives[0])
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(archives[1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("two builds of the same inputs differ (%d and %d bytes)", len(first), len(second))
	}

	idx, err := ociimage.ReadArchive(archives[0], name, filepath.Join(dir, "layout"))
	if err != nil {
		t.Fatal(err)
	}
	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(outputs[0], digest.String()) {
		t.Errorf("build output %q does not print the index digest %s", outputs[0], digest)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", mt, types.OCIImageIndex)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.String() != platform {
		t.Fatalf("index manifests %+v, want one for %s", im.Manifests, platform)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, img)
	files := checkFilesystem(t, img, binary)

	if image, ok := loadIntoPodman(t, archives[0], name); ok && runInPodman(t, image) {
		return
	}
	// Without a usable container runtime, the binary is taken out of the
	// layer as written and run directly.
	extracted := filepath.Join(dir, "rootfs", "podlb-controller")
	if err := os.MkdirAll(filepath.Dir(extracted), 0o755); err != nil {
		t.Fatal(err)
	}
	f := files["podlb-controller"]
	if err := os.WriteFile(extracted, f.data, os.FileMode(f.mode).Perm()); err != nil {
		t.Fatal(err)
	}
	t.Logf("ran the binary extracted from the image layer, not a container")
	checkCommands(t, func(arg string) *exec.Cmd { return exec.Command(extracted, arg) })
}

// buildController cross-compiles the controller for linux on this
// machine's architecture as `make image` does, with a version to look for.
func buildController(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "podlb-controller")
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/podlb/podlb/internal/version.Version="+testVersion,
		"-o", out, "github.com/podlb/podlb/cmd/podlb-controller")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func checkConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("config user %q, want 65532:65532", cf.Config.User)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/podlb-controller"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/podlb-controller] and no cmd", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if want := time.Unix(1700000000, 0).UTC(); !cf.Created.Time.Equal(want) {
		t.Errorf("created %s, want %s", cf.Created.Time, want)
	}
	for k, want := range map[string]string{
		ociimage.LabelVersion:  testVersion,
		ociimage.LabelRevision: testRevision,
		ociimage.LabelSource:   "https://github.com/podlb/podlb",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
}

type file struct {
	mode     int64
	uid, gid int
	data     []byte
}

// checkFilesystem flattens the image's layers and compares them with what
// the image must hold.
func checkFilesystem(t *testing.T, img v1.Image, binary string) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]file{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := h.Name
		if h.Typeflag == tar.TypeDir {
			name = strings.TrimSuffix(name, "/") + "/"
		}
		files[name] = file{mode: h.Mode, uid: h.Uid, gid: h.Gid, data: data}
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, wantFiles) {
		t.Fatalf("image filesystem\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(wantFiles, "\n"))
	}

	ca, err := os.ReadFile(hostCACerts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"].data, ca) {
		t.Errorf("image CA bundle differs from %s", hostCACerts)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "\nnonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no nonroot entry for 65532:\n%s", files["etc/passwd"].data)
	}
	if h := files["home/nonroot/"]; h.uid != 65532 || h.gid != 65532 {
		t.Errorf("/home/nonroot owned by %d:%d, want 65532:65532", h.uid, h.gid)
	}
	want, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	ctl := files["podlb-controller"]
	if !bytes.Equal(ctl.data, want) {
		t.Errorf("/podlb-controller in the image differs from the binary built")
	}
	if ctl.mode != 0o755 || ctl.uid != 0 {
		t.Errorf("/podlb-controller mode %o owner %d, want 755 owned by root", ctl.mode, ctl.uid)
	}
	return files
}

// loadIntoPodman loads the archive when podman is on PATH and answers;
// a failed load of a working podman fails the test, since the archive
// is then at fault.
func loadIntoPodman(t *testing.T, archive, name string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Logf("podman not on PATH")
		return "", false
	}
	if out, err := exec.Command("podman", "info").CombinedOutput(); err != nil {
		t.Logf("podman does not work here: %v\n%s", err, out)
		return "", false
	}
	out, err := exec.Command("podman", "load", "-i", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	image := "localhost/" + name
	if !strings.Contains(string(out), "Loaded image: "+image) {
		t.Fatalf("podman load did not name the image %s:\n%s", image, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("podman", "rmi", "--force", image).CombinedOutput(); err != nil {
			t.Logf("podman rmi %s: %v\n%s", image, err, out)
		}
	})
	return image, true
}

// podmanRun runs the image as the Deployment does: read-only root, UID
// 65532, no network. The limits are set below any host's so the runtime
// never needs to raise one (some sandboxes forbid it);
// $PODLB_PODMAN_RUNTIME picks another OCI runtime (e.g. runc where crun
// cannot use the host's cgroup layout).
func podmanRun(image string, args ...string) *exec.Cmd {
	run := []string{"run", "--rm", "--read-only", "--user", "65532", "--network=none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	if rt := os.Getenv("PODLB_PODMAN_RUNTIME"); rt != "" {
		run = append(run, "--runtime", rt)
	}
	run = append(run, args[:len(args)-1]...)
	return exec.Command("podman", append(append(run, image), args[len(args)-1:]...)...)
}

// runInPodman reports false when the runtime cannot start any container
// here; an image that starts but misbehaves fails the test.
func runInPodman(t *testing.T, image string) bool {
	t.Helper()
	out, err := podmanRun(image, "--version").CombinedOutput()
	if err != nil && runtimeUnusable(err, out) {
		t.Logf("podman cannot start containers here: %v\n%s", err, out)
		return false
	}
	t.Logf("ran the image with podman")
	checkCommands(t, func(arg string) *exec.Cmd { return podmanRun(image, arg) })

	// No shell: a container asked to start one fails to find it.
	out, err = podmanRun(image, "--entrypoint", "/bin/sh", "-c").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/bin/sh") || !strings.Contains(string(out), "no such file") {
		t.Errorf("starting /bin/sh in the image: %v, want it not found:\n%s", err, out)
	}
	return true
}

// runtimeUnusable tells a runtime that failed before the entrypoint (exit
// 125 from podman, or 126 with the runtime's own setup error) from an
// image fault; an entrypoint missing or not executable is checked again
// by running the extracted binary.
func runtimeUnusable(err error, out []byte) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	switch ee.ExitCode() {
	case 125:
		return true
	case 126:
		return strings.Contains(string(out), "OCI runtime error") || strings.Contains(string(out), "OCI permission denied")
	}
	return false
}

// checkCommands runs --version and --help through start and checks what
// they print.
func checkCommands(t *testing.T, start func(arg string) *exec.Cmd) {
	t.Helper()
	out, err := start("--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "podlb-controller "+testVersion; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
	out, err = start("--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, flag := range []string{"-cluster-name", "-providers", "-version"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help output lacks %s:\n%s", flag, out)
		}
	}
}

func TestBadInputIsRejectedNamingTheFlag(t *testing.T) {
	if _, err := os.Stat(hostCACerts); err != nil {
		t.Skipf("no CA bundle on this machine for the valid part of the input: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "podlb-controller")
	if err := os.WriteFile(bin, []byte("not run"), 0o755); err != nil {
		t.Fatal(err)
	}
	noPEM := filepath.Join(dir, "empty.crt")
	if err := os.WriteFile(noPEM, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--binary", "linux/amd64=" + bin, "--version", "v1", "--created", "1", "--ca-certs", hostCACerts, "--out", filepath.Join(dir, "x.tar")}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no created time", []string{"--binary", "linux/amd64=" + bin, "--version", "v1"}, "--created"},
		{"created not a number", append(ok, "--created", "yesterday"), "--created"},
		{"binary without platform", append(ok, "--binary", bin), "binary"},
		{"platform without arch", append(ok, "--binary", "linux="+bin), "os/arch"},
		{"platform twice", append(ok, "--binary", "linux/amd64="+bin), "given twice"},
		{"no version", append(ok, "--version", ""), "version"},
		{"CA file without certificates", append(ok, "--ca-certs", noPEM), "ca-certs"},
		{"missing binary", []string{"--binary", "linux/arm64=" + filepath.Join(dir, "absent"), "--version", "v1", "--created", "1", "--ca-certs", hostCACerts}, "binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.args, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}
