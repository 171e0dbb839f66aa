package testharness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// KeyPair is a certificate with its key, parsed and in PEM.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	PEM     []byte // the certificate
	KeyPEM  []byte // its key (SEC 1, "EC PRIVATE KEY")
	TLSCert tls.Certificate
}

// Issue creates a certificate from tmpl, signed by parent (nil: self-signed), valid for an hour.
func Issue(t *testing.T, tmpl *x509.Certificate, parent *KeyPair) *KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	kp := &KeyPair{Cert: cert, Key: key,
		PEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
	kp.TLSCert, err = tls.X509KeyPair(kp.PEM, kp.KeyPEM)
	require.NoError(t, err)
	return kp
}

// NewCA creates a self-signed CA.
func NewCA(t *testing.T, name string) *KeyPair {
	return Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, nil)
}

// ServerCert is a server certificate for 127.0.0.1 (and localhost) signed by ca.
func ServerCert(t *testing.T, ca *KeyPair, name string) *KeyPair {
	return Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
}

// ClientCert is a client certificate for name signed by ca.
func ClientCert(t *testing.T, ca *KeyPair, name string) *KeyPair {
	return Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca)
}

// CertPool is a pool holding the certificate (a CA's).
func (k *KeyPair) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(k.Cert)
	return pool
}
