package testharness

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
)

// TLSProxy terminates TLS in front of a plaintext server (the Temporal dev server has no TLS
// flags): clients speak TLS to it, it forwards the bytes. With client CAs it requires a client
// certificate they signed (mTLS) and refuses clients without one.
type TLSProxy struct {
	Addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

// StartTLSProxy listens on 127.0.0.1 with cert and forwards to target (host:port); clientCAs nil
// accepts any client.
func StartTLSProxy(target string, cert tls.Certificate, clientCAs *x509.CertPool) (*TLSProxy, error) {
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return nil, err
	}
	p := &TLSProxy{Addr: ln.Addr().String(), ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return p, nil
}

// Close stops accepting connections.
func (p *TLSProxy) Close() {
	_ = p.ln.Close()
	p.wg.Wait()
}
