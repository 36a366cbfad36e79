package elbv2sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// certificate is one emulated ACM certificate: a self-signed ECDSA
// certificate for its domains, which is its own trust anchor.
type certificate struct {
	arn     string
	domains []string
	tls     tls.Certificate
}

// IssueCertificate creates a certificate for the given domain names (the
// first is its subject; "*.example.com" wildcards are allowed) and returns
// its ARN, arn:aws:acm:REGION:ACCOUNT:certificate/UUID, for HTTPS
// listeners. CertificatePool trusts it. It panics if no domain is given.
func (s *Server) IssueCertificate(domains ...string) (arn string) {
	if len(domains) == 0 {
		panic("elbv2sim: IssueCertificate needs at least one domain name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("elbv2sim: generating a key: %v", err))
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("elbv2sim: generating a serial: %v", err))
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domains[0], Organization: []string{"elbv2sim"}},
		DNSNames:     slices.Clone(domains),
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(395 * 24 * time.Hour), // ACM's 13 months
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Self-signed and a CA, so a pool holding it verifies it.
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(fmt.Sprintf("elbv2sim: creating a certificate: %v", err))
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("elbv2sim: parsing a certificate: %v", err))
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	c := &certificate{
		arn: fmt.Sprintf("arn:aws:acm:%s:%s:certificate/%x-%x-%x-%x-%x",
			s.opts.Region, s.opts.AccountID, u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]),
		domains: slices.Clone(domains),
		tls:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}
	s.mu.Lock()
	s.certs[c.arn] = c
	s.mu.Unlock()
	return c.arn
}

// CertificatePool holds every certificate issued so far, for clients that
// verify HTTPS listeners.
func (s *Server) CertificatePool() *x509.CertPool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool := x509.NewCertPool()
	for _, c := range s.certs {
		pool.AddCert(c.tls.Leaf)
	}
	return pool
}

// sslPolicies are the security policies the emulator knows, with the
// lowest TLS version each allows.
var sslPolicies = map[string]uint16{
	"ELBSecurityPolicy-2016-08":                tls.VersionTLS10,
	"ELBSecurityPolicy-TLS-1-2-2017-01":        tls.VersionTLS12,
	"ELBSecurityPolicy-FS-1-2-Res-2020-10":     tls.VersionTLS12,
	"ELBSecurityPolicy-TLS13-1-2-2021-06":      tls.VersionTLS12,
	"ELBSecurityPolicy-TLS13-1-2-Res-2021-06":  tls.VersionTLS12,
	"ELBSecurityPolicy-TLS13-1-3-2021-06":      tls.VersionTLS13,
	"ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06": tls.VersionTLS12,
}

// defaultSSLPolicy is what the console and API pick for new HTTPS
// listeners since 2023.
const defaultSSLPolicy = "ELBSecurityPolicy-TLS13-1-2-2021-06"

// readCertificates reads Certificates.member.N.CertificateArn. Callers hold s.mu.
func (s *Server) readCertificates(p params) ([]string, *apiError) {
	var out []string
	for _, m := range p.members("Certificates") {
		arn := p.get(m + ".CertificateArn")
		if s.certs[arn] == nil {
			return nil, newErr("CertificateNotFound", "Certificate '%s' not found", arn)
		}
		if !slices.Contains(out, arn) {
			out = append(out, arn)
		}
	}
	return out, nil
}

// serverCertificate picks the certificate of l for a TLS handshake: the
// first whose names cover the SNI name, else the default (first) one.
func (s *Server) serverCertificate(l *listener, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var def *tls.Certificate
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	for _, arn := range l.certs {
		c := s.certs[arn]
		if c == nil {
			continue
		}
		if def == nil {
			def = &c.tls
		}
		if name != "" && c.tls.Leaf.VerifyHostname(name) == nil {
			return &c.tls, nil
		}
	}
	if def == nil {
		return nil, fmt.Errorf("elbv2sim: listener %s has no certificate", l.arn)
	}
	return def, nil
}

// tlsConfig is the server side of an HTTPS or TLS listener: the certificate by
// SNI and the lowest TLS version of the listener's current policy.
func (s *Server) tlsConfig(l *listener) *tls.Config {
	getCert := func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.serverCertificate(l, hello)
	}
	return &tls.Config{
		GetCertificate: getCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			minVersion := sslPolicies[l.sslPolicy]
			s.mu.Unlock()
			cfg := &tls.Config{MinVersion: minVersion, GetCertificate: getCert}
			if l.lbType == "application" {
				cfg.NextProtos = []string{"http/1.1"}
			}
			return cfg, nil
		},
	}
}
