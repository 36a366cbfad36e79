package controllerflags

import "testing"

func TestEnvironmentSetsDefaultsAndFlagsOverrideThem(t *testing.T) {
	env := map[string]string{"POD_NAMESPACE": "ops", "AWS_REGION": "eu-west-1"}
	fs, v := New(func(k string) string { return env[k] })
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if v.Namespace != "ops" || v.AWSRegion != "eu-west-1" {
		t.Errorf("namespace %q, region %q: want the environment's", v.Namespace, v.AWSRegion)
	}
	fs, v = New(func(k string) string { return env[k] })
	if err := fs.Parse([]string{"--namespace=podlb", "--aws-region=us-east-2", "--zap-log-level=debug"}); err != nil {
		t.Fatal(err)
	}
	if v.Namespace != "podlb" || v.AWSRegion != "us-east-2" {
		t.Errorf("namespace %q, region %q: want the flags'", v.Namespace, v.AWSRegion)
	}
	fs, v = New(func(string) string { return "" })
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if v.Namespace != "podlb-system" || v.AWSRegion != "" || !v.LeaderElect || v.Workers != 32 {
		t.Errorf("built-in defaults wrong: %+v", v)
	}
}
