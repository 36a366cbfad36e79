package computesim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// maxSSLCertificatesPerProxy is GCE's limit of certificates on one target
// HTTPS proxy.
const maxSSLCertificatesPerProxy = 15

type sslCert struct {
	pb     *computepb.SslCertificate // without the private key
	path   string
	region string
	cert   tls.Certificate // with Leaf set
}

func sslCertPath(r *http.Request) (string, *apiError) {
	coll, _, e := scopedCollection(r, "sslCertificates")
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("cert"), nil
}

// parseSelfManaged reads the PEM certificate chain and key of a
// self-managed certificate from either the selfManaged block or the
// legacy top-level fields.
func parseSelfManaged(in *computepb.SslCertificate) (tls.Certificate, *apiError) {
	typ := in.GetType()
	if typ == "" {
		typ = "SELF_MANAGED"
	}
	if typ != "SELF_MANAGED" {
		return tls.Certificate{}, errInvalidField("resource.type", typ, "Only SELF_MANAGED SSL certificates are emulated.")
	}
	certPEM, keyPEM := in.GetCertificate(), in.GetPrivateKey()
	if sm := in.GetSelfManaged(); sm != nil {
		certPEM, keyPEM = sm.GetCertificate(), sm.GetPrivateKey()
	}
	if certPEM == "" {
		return tls.Certificate{}, errInvalid("Required field 'resource.selfManaged.certificate' not specified")
	}
	if keyPEM == "" {
		return tls.Certificate{}, errInvalid("Required field 'resource.selfManaged.privateKey' not specified")
	}
	if n := strings.Count(certPEM, "-----BEGIN CERTIFICATE-----"); n > 5 {
		return tls.Certificate{}, errInvalid("Invalid value for field 'resource.selfManaged.certificate': the chain has %d certificates; at most 5 are allowed.", n)
	}
	c, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return tls.Certificate{}, errInvalid("The SSL certificate and key could not be parsed or do not match: %v", err)
	}
	return c, nil
}

func (s *Server) certInsert(r *http.Request) (proto.Message, *apiError) {
	coll, region, e := scopedCollection(r, "sslCertificates")
	if e != nil {
		return nil, e
	}
	in := &computepb.SslCertificate{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	c, e := parseSelfManaged(in)
	if e != nil {
		return nil, e
	}
	var regionLink string
	if region != "" {
		regionLink = selfLink(fmt.Sprintf("projects/%s/regions/%s", r.PathValue("project"), region))
	}
	sc := newSSLCert(coll+"/"+in.GetName(), region, regionLink, in.GetDescription(), c)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sslCerts[sc.path] != nil {
		return nil, errAlreadyExists(sc.path)
	}
	return s.startOpLocked(r, scopeOf(r), "insert", sc.path, sc.pb.GetId(), func() *apiError {
		if s.sslCerts[sc.path] != nil {
			return errAlreadyExists(sc.path)
		}
		s.sslCerts[sc.path] = sc
		return nil
	}), nil
}

// newSSLCert builds the stored form of a certificate: what GCE reports
// (the chain, its names and expiry, never the private key) plus the key
// pair the data path serves.
func newSSLCert(path, region, regionLink, description string, c tls.Certificate) *sslCert {
	var chain strings.Builder
	for _, der := range c.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	leaf := c.Leaf
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	pb := &computepb.SslCertificate{
		Kind:                    proto.String("compute#sslCertificate"),
		Id:                      proto.Uint64(newID()),
		CreationTimestamp:       proto.String(nowStamp()),
		Name:                    proto.String(lastSegment(path)),
		Type:                    proto.String("SELF_MANAGED"),
		Certificate:             proto.String(chain.String()),
		SelfManaged:             &computepb.SslCertificateSelfManagedSslCertificate{Certificate: proto.String(chain.String())},
		SubjectAlternativeNames: names,
		ExpireTime:              proto.String(leaf.NotAfter.Format(time.RFC3339)),
		SelfLink:                proto.String(selfLink(path)),
	}
	if description != "" {
		pb.Description = proto.String(description)
	}
	if regionLink != "" {
		pb.Region = proto.String(regionLink)
	}
	return &sslCert{pb: pb, path: path, region: region, cert: c}
}

func (s *Server) certGet(r *http.Request) (proto.Message, *apiError) {
	path, e := sslCertPath(r)
	if e != nil {
		return nil, e
	}
	return getResource(s, path, s.sslCerts, func(c *sslCert) *computepb.SslCertificate { return c.pb })
}

func (s *Server) certList(r *http.Request) (proto.Message, *apiError) {
	coll, _, e := scopedCollection(r, "sslCertificates")
	if e != nil {
		return nil, e
	}
	items, next, e := listPage(s, r, s.sslCerts, func(c *sslCert) *computepb.SslCertificate { return c.pb }, under[*sslCert](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.SslCertificateList{Kind: proto.String("compute#sslCertificateList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) certDelete(r *http.Request) (proto.Message, *apiError) {
	path, e := sslCertPath(r)
	if e != nil {
		return nil, e
	}
	user := func() string {
		var users []string
		for p, hp := range s.httpProxies {
			for _, c := range hp.pb.GetSslCertificates() {
				if ResourcePath(c) == path {
					users = append(users, p)
				}
			}
		}
		for p, tp := range s.tcpProxies {
			for _, c := range tp.pb.GetSslCertificates() {
				if ResourcePath(c) == path {
					users = append(users, p)
				}
			}
		}
		return firstUser(users)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return deleteLocked(s, r, path, s.sslCerts, func(c *sslCert) uint64 { return c.pb.GetId() }, user, nil)
}

// ---- a private CA for tests ----

// certAuthority signs the certificates IssueCertificate and CertificatePEM
// make; clients trust them through RootCAs.
type certAuthority struct {
	once sync.Once
	err  error
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 62)

func (ca *certAuthority) init() error {
	ca.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			ca.err = err
			return
		}
		serial, _ := rand.Int(rand.Reader, serialLimit)
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: "computesim test CA"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			ca.err = err
			return
		}
		ca.cert, _ = x509.ParseCertificate(der)
		ca.key = key
		ca.pool = x509.NewCertPool()
		ca.pool.AddCert(ca.cert)
	})
	return ca.err
}

// CertificatePEM makes a certificate for domains (host names, "*.suffix"
// wildcards or IP addresses), signed by the emulator's CA, and returns the
// PEM certificate and private key to insert as a self-managed
// sslCertificate.
func (s *Server) CertificatePEM(domains ...string) (certPEM, keyPEM string, err error) {
	if len(domains) == 0 {
		return "", "", errors.New("computesim: a certificate needs at least one domain")
	}
	if err := s.ca.init(); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, _ := rand.Int(rand.Reader, serialLimit)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domains[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, d := range domains {
		if ip := net.ParseIP(d); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, d)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, &key.PublicKey, s.ca.key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), nil
}

// IssueCertificate creates the global sslCertificate name in
// Options.Project (which must be set) for domains, signed by the
// emulator's CA, as if a self-managed certificate had been inserted.
func (s *Server) IssueCertificate(name string, domains ...string) error {
	return s.IssueRegionalCertificate("", name, domains...)
}

// IssueRegionalCertificate is IssueCertificate for a regional
// sslCertificate, the kind regional HTTPS proxies take; region "" is
// global.
func (s *Server) IssueRegionalCertificate(region, name string, domains ...string) error {
	if s.opts.Project == "" {
		return errors.New("computesim: IssueCertificate needs Options.Project")
	}
	if e := validateName(name); e != nil {
		return e
	}
	certPEM, keyPEM, err := s.CertificatePEM(domains...)
	if err != nil {
		return err
	}
	c, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return err
	}
	scopePath, regionLink := "projects/"+s.opts.Project+"/"+scopePrefix(region), ""
	if region != "" {
		regionLink = selfLink(scopePath)
	}
	path := scopePath + "/sslCertificates/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sslCerts[path] != nil {
		return errAlreadyExists(path)
	}
	s.sslCerts[path] = newSSLCert(path, region, regionLink, "", c)
	return nil
}

// RootCAs is a pool holding the emulator's CA, for clients of HTTPS
// forwarding rules whose certificates come from IssueCertificate or
// CertificatePEM.
func (s *Server) RootCAs() *x509.CertPool {
	if err := s.ca.init(); err != nil {
		return x509.NewCertPool()
	}
	return s.ca.pool.Clone()
}
