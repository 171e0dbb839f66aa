package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/skein-dts/skein/pkg/temporalx"
	"github.com/skein-dts/skein/pkg/testharness"
)

// TestTemporalConnectionFromEnv reaches the dev server through a TLS-terminating proxy with the
// settings the Temporal CLI's variables give: server TLS with a CA (as a file and as a value),
// mTLS with a client certificate (refused without one), and an API key that reaches the requests.
func TestTemporalConnectionFromEnv(t *testing.T) {
	parallel(t)
	ctx := context.Background()
	ca := testharness.NewCA(t, "temporal test CA")
	server := testharness.ServerCert(t, ca, "temporal.test")
	client1 := testharness.ClientCert(t, ca, "skein-worker")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	require.NoError(t, os.WriteFile(certFile, client1.PEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, client1.KeyPEM, 0o600))

	plain, err := testharness.StartTLSProxy(devServer.FrontendHostPort(), server.TLSCert, nil)
	require.NoError(t, err)
	defer plain.Close()
	mutual, err := testharness.StartTLSProxy(devServer.FrontendHostPort(), server.TLSCert, ca.CertPool())
	require.NoError(t, err)
	defer mutual.Close()

	dial := func(env map[string]string, opts ...grpc.DialOption) error {
		conn, err := temporalx.ConnectionFromEnv(func(k string) string { return env[k] })
		if err != nil {
			return err
		}
		o := conn.Options(client.Options{Logger: temporalx.NewZapLogger(zap.NewNop())})
		o.ConnectionOptions.DialOptions = opts
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := client.DialContext(dctx, o)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.WorkflowService().DescribeNamespace(dctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		return err
	}
	t.Run("server TLS, CA as a file", func(t *testing.T) {
		require.NoError(t, dial(map[string]string{"TEMPORAL_ADDRESS": plain.Addr, "TEMPORAL_TLS_CA": caFile, "TEMPORAL_TLS_SERVER_NAME": "temporal.test"}))
	})
	t.Run("server TLS, CA as a value", func(t *testing.T) {
		require.NoError(t, dial(map[string]string{"TEMPORAL_ADDRESS": plain.Addr, "TEMPORAL_TLS_CA": string(ca.PEM)}))
	})
	t.Run("server TLS without the CA fails", func(t *testing.T) {
		require.Error(t, dial(map[string]string{"TEMPORAL_ADDRESS": plain.Addr, "TEMPORAL_TLS": "true"}))
	})
	t.Run("mTLS", func(t *testing.T) {
		require.NoError(t, dial(map[string]string{"TEMPORAL_ADDRESS": mutual.Addr, "TEMPORAL_TLS_CA": caFile,
			"TEMPORAL_TLS_CERT": certFile, "TEMPORAL_TLS_KEY": keyFile}))
		require.Error(t, dial(map[string]string{"TEMPORAL_ADDRESS": mutual.Addr, "TEMPORAL_TLS_CA": caFile}), "no client certificate: refused")
	})
	t.Run("API key", func(t *testing.T) {
		var seen []string
		capture := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if md, ok := metadata.FromOutgoingContext(ctx); ok {
				seen = append(seen, md.Get("authorization")...)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		})
		require.NoError(t, dial(map[string]string{"TEMPORAL_ADDRESS": plain.Addr, "TEMPORAL_TLS_CA": caFile, "TEMPORAL_API_KEY": "key-123"}, capture))
		require.Contains(t, seen, "Bearer key-123")
	})
	t.Run("a certificate without its key is refused", func(t *testing.T) {
		require.ErrorContains(t, dial(map[string]string{"TEMPORAL_ADDRESS": mutual.Addr, "TEMPORAL_TLS_CERT": certFile}), "TEMPORAL_TLS_KEY")
	})
}
