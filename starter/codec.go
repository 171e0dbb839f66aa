package main

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/converter"

	"github.com/skein-dts/skein/pkg/secrets"
	"github.com/skein-dts/skein/pkg/temporalx"
)

// codecServerCmd serves Temporal's codec protocol (POST …/encode and …/decode) with Skein's
// payload codecs, so that the Temporal UI (its "codec server" setting) and CLI (--codec-endpoint)
// show encrypted payloads to whoever may reach it.
func codecServerCmd() *cobra.Command {
	var addr, origin, tokenSecret string
	cmd := &cobra.Command{
		Use:   "codec-server",
		Short: "serve the payload codec (decryption) for the Temporal UI and CLI",
		Long: `Serve Temporal's codec protocol with Skein's payload codecs (SKEIN_PAYLOAD_KEY, SKEIN_PAYLOAD_OLD_KEYS).
Point the Temporal UI's codec server setting, or the CLI's --codec-endpoint, at it. --cors-origin lets the
UI's origin call it from the browser; --token-secret requires "Authorization: Bearer <secret>" (the UI can
pass the user's access token).`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc, err := temporalx.Encryption()
			if err != nil {
				return err
			}
			if enc == nil {
				return fmt.Errorf("SKEIN_PAYLOAD_KEY is not set: there is nothing to decode")
			}
			token := ""
			if tokenSecret != "" {
				if token, err = (secrets.Resolver{}).Resolve(tokenSecret); err != nil {
					return err
				}
			}
			srv := &http.Server{Addr: addr, Handler: codecHandler(temporalx.Codecs(enc), origin, token), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "codec server on %s\n", addr)
			return srv.ListenAndServe()
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8088", "listen address")
	cmd.Flags().StringVar(&origin, "cors-origin", "", "the Temporal UI's origin allowed to call it (e.g. http://localhost:8233)")
	cmd.Flags().StringVar(&tokenSecret, "token-secret", "", "a secret holding the bearer token callers must send")
	return cmd
}

// codecHandler is the codec protocol's handler with CORS for origin and, when token is set, a
// bearer token check.
func codecHandler(codecs []converter.PayloadCodec, origin, token string) http.Handler {
	inner := converter.NewPayloadCodecHTTPHandler(codecs...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin != "" {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		}
		if r.Method == http.MethodOptions {
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	})
}
