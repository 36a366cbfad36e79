package computesim_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// greeting dials addr (over TLS when conf is set) and reads the first
// line: the IP of the backend that answered, "" when none did.
func greeting(t *testing.T, addr string, conf *tls.Config) string {
	t.Helper()
	d := &net.Dialer{Timeout: time.Second}
	var (
		c   net.Conn
		err error
	)
	if conf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, conf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

func TestTargetSSLProxyTerminatesTLS(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	e.createHC("hc", "TCP", 1, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
		BackendServiceResource: tcpBackendService("bs", "hc", 0, negURL(zoneA, "neg-a"))}))
	for _, c := range [][2]string{{"www", "www.example.com"}, {"api", "api.example.com"}} {
		if err := e.srv.IssueCertificate(c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}

	// Certificates are required and must exist.
	proxy := &computepb.TargetSslProxy{Name: proto.String("sp"), Service: proto.String("global/backendServices/bs")}
	expectErr(t, e.opErr(e.sps.Insert(e.ctx, &computepb.InsertTargetSslProxyRequest{Project: project, TargetSslProxyResource: proxy})), 400, "invalid")
	proxy.SslCertificates = []string{"global/sslCertificates/missing"}
	expectErr(t, e.opErr(e.sps.Insert(e.ctx, &computepb.InsertTargetSslProxyRequest{Project: project, TargetSslProxyResource: proxy})), 404, "notFound")
	proxy.SslCertificates = []string{"global/sslCertificates/www"}
	e.done(e.sps.Insert(e.ctx, &computepb.InsertTargetSslProxyRequest{Project: project, TargetSslProxyResource: proxy}))
	got, err := e.sps.Get(e.ctx, &computepb.GetTargetSslProxyRequest{Project: project, TargetSslProxy: "sp"})
	if err != nil || got.GetKind() != "compute#targetSslProxy" || got.GetProxyHeader() != "NONE" ||
		len(got.GetSslCertificates()) != 1 || !strings.HasSuffix(got.GetSslCertificates()[0], "/global/sslCertificates/www") {
		t.Fatalf("target SSL proxy: %v %v", got, err)
	}
	// Target TCP proxies are another collection, listed apart.
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/bs")}}))
	if _, err := e.tps.Get(e.ctx, &computepb.GetTargetTcpProxyRequest{Project: project, TargetTcpProxy: "sp"}); err == nil {
		t.Fatal("the SSL proxy is found as a TCP proxy")
	}
	var tcp, ssl []string
	tcpIt := e.tps.List(e.ctx, &computepb.ListTargetTcpProxiesRequest{Project: project})
	for tp, err := tcpIt.Next(); err == nil; tp, err = tcpIt.Next() {
		tcp = append(tcp, tp.GetName())
	}
	sslIt := e.sps.List(e.ctx, &computepb.ListTargetSslProxiesRequest{Project: project})
	for sp, err := sslIt.Next(); err == nil; sp, err = sslIt.Next() {
		ssl = append(ssl, sp.GetName())
	}
	if fmt.Sprint(tcp, ssl) != "[tp] [sp]" {
		t.Fatalf("TCP proxies %v, SSL proxies %v", tcp, ssl)
	}
	e.done(e.tps.Delete(e.ctx, &computepb.DeleteTargetTcpProxyRequest{Project: project, TargetTcpProxy: "tp"}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("global/targetSslProxies/sp"), PortRange: proto.String("443"),
	}}))
	b := startTCPBackend(t, "127.27.3.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", b.ip, b.port)))
	addr := e.srv.ForwardingRuleAddr("fr")
	conf := func(name string) *tls.Config { return &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: name} }
	eventually(t, "a connection through the SSL proxy", 5*time.Second, func() bool { return greeting(t, addr, conf("www.example.com")) == b.ip })
	// Plain TCP gets no further than the handshake.
	if got := greeting(t, addr, nil); got != "" {
		t.Fatalf("plain TCP through an SSL proxy reached %q", got)
	}
	// api.example.com is not among the certificates yet.
	if got := greeting(t, addr, conf("api.example.com")); got != "" {
		t.Fatalf("a name no certificate covers reached %q", got)
	}

	e.done(e.sps.SetSslCertificates(e.ctx, &computepb.SetSslCertificatesTargetSslProxyRequest{Project: project, TargetSslProxy: "sp",
		TargetSslProxiesSetSslCertificatesRequestResource: &computepb.TargetSslProxiesSetSslCertificatesRequest{
			SslCertificates: []string{"global/sslCertificates/www", "global/sslCertificates/api"}}}))
	if got := greeting(t, addr, conf("api.example.com")); got != b.ip {
		t.Fatalf("with the api certificate: %q", got)
	}

	// In use: the certificate, the backend service and the proxy.
	expectErr(t, e.opErr(e.certs.Delete(e.ctx, &computepb.DeleteSslCertificateRequest{Project: project, SslCertificate: "api"})), 400, "resourceInUseByAnotherResource")
	expectErr(t, e.opErr(e.bs.Delete(e.ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: "bs"})), 400, "resourceInUseByAnotherResource")
	expectErr(t, e.opErr(e.sps.Delete(e.ctx, &computepb.DeleteTargetSslProxyRequest{Project: project, TargetSslProxy: "sp"})), 400, "resourceInUseByAnotherResource")
	e.done(e.frs.Delete(e.ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"}))
	e.done(e.sps.Delete(e.ctx, &computepb.DeleteTargetSslProxyRequest{Project: project, TargetSslProxy: "sp"}))
	e.done(e.certs.Delete(e.ctx, &computepb.DeleteSslCertificateRequest{Project: project, SslCertificate: "api"}))
}

func TestRegionalTargetTCPProxy(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	e.createHC("hc", "TCP", 1, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
		BackendServiceResource: tcpBackendService("global-bs", "hc", 0)}))
	rhc := &computepb.HealthCheck{Name: proto.String("rhc"), Type: proto.String("TCP"), HealthyThreshold: proto.Int32(1),
		TcpHealthCheck: &computepb.TCPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT")}}
	e.done(e.rhcs.Insert(e.ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region, HealthCheckResource: rhc}))
	rbs := tcpBackendService("rbs", "rhc", 0, negURL(zoneA, "neg-a"))
	rbs.HealthChecks = []string{"regions/" + region + "/healthChecks/rhc"}
	rbs.LoadBalancingScheme = proto.String("INTERNAL_MANAGED")
	e.done(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: rbs}))

	// A regional proxy takes a backend service of its region only.
	proxy := &computepb.TargetTcpProxy{Name: proto.String("rtp"), Service: proto.String("projects/" + project + "/global/backendServices/global-bs")}
	expectErr(t, e.opErr(e.rtps.Insert(e.ctx, &computepb.InsertRegionTargetTcpProxyRequest{Project: project, Region: region, TargetTcpProxyResource: proxy})), 400, "invalid")
	proxy.Service = proto.String("rbs")
	e.done(e.rtps.Insert(e.ctx, &computepb.InsertRegionTargetTcpProxyRequest{Project: project, Region: region, TargetTcpProxyResource: proxy}))
	got, err := e.rtps.Get(e.ctx, &computepb.GetRegionTargetTcpProxyRequest{Project: project, Region: region, TargetTcpProxy: "rtp"})
	if err != nil || !strings.HasSuffix(got.GetRegion(), "/regions/"+region) || !strings.HasSuffix(got.GetService(), "/regions/"+region+"/backendServices/rbs") ||
		got.GetKind() != "compute#targetTcpProxy" {
		t.Fatalf("regional target TCP proxy: %v %v", got, err)
	}
	var listed []string
	it := e.rtps.List(e.ctx, &computepb.ListRegionTargetTcpProxiesRequest{Project: project, Region: region})
	for tp, err := it.Next(); err == nil; tp, err = it.Next() {
		listed = append(listed, tp.GetName())
	}
	if len(listed) != 1 || listed[0] != "rtp" {
		t.Fatalf("regional list: %v", listed)
	}
	if _, err := e.tps.Get(e.ctx, &computepb.GetTargetTcpProxyRequest{Project: project, TargetTcpProxy: "rtp"}); err == nil {
		t.Fatal("the regional proxy is visible globally")
	}

	e.done(e.rfrs.Insert(e.ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: region, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("rfr"), Target: proto.String("regions/" + region + "/targetTcpProxies/rtp"), PortRange: proto.String("5432"),
		LoadBalancingScheme: proto.String("INTERNAL_MANAGED"),
	}}))
	b := startTCPBackend(t, "127.27.4.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", b.ip, b.port)))
	addr := e.srv.ForwardingRuleAddr("rfr")
	eventually(t, "a connection through the regional proxy", 5*time.Second, func() bool { return greeting(t, addr, nil) == b.ip })

	expectErr(t, e.opErr(e.rtps.Delete(e.ctx, &computepb.DeleteRegionTargetTcpProxyRequest{Project: project, Region: region, TargetTcpProxy: "rtp"})), 400, "resourceInUseByAnotherResource")
	e.done(e.rfrs.Delete(e.ctx, &computepb.DeleteForwardingRuleRequest{Project: project, Region: region, ForwardingRule: "rfr"}))
	e.done(e.rtps.Delete(e.ctx, &computepb.DeleteRegionTargetTcpProxyRequest{Project: project, Region: region, TargetTcpProxy: "rtp"}))
}
