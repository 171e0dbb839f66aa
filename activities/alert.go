package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/skein-dts/skein/pkg/api"
	"github.com/skein-dts/skein/pkg/errclass"
	"github.com/skein-dts/skein/pkg/spec"
)

// Alert kinds (api's).
const (
	AlertLatency = api.AlertLatency
	AlertFailed  = api.AlertFailed
)

// AlertEvent is api.AlertEvent.
type AlertEvent = api.AlertEvent

// AlertInput is api.AlertInput.
type AlertInput = api.AlertInput

// webhookClient posts alerts: a short timeout, and no redirects followed (a redirect could carry
// the alert, and what the URL's token grants, elsewhere).
var webhookClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Alert logs the event and POSTs it to the webhook, if one is set. A failed POST is an error, so
// the workflow's retry policy sends it again.
func (a *Activities) Alert(ctx context.Context, in AlertInput) error {
	ev := in.Event
	ev.Time = time.Now().UTC().Format(time.RFC3339)
	a.logger(ctx).Warn("alert", zap.String("kind", ev.Kind), zap.String("phase", ev.Phase), zap.String("message", ev.Message),
		zap.Float64("lag_seconds", ev.LagSeconds), zap.Int64("lag_bytes", ev.LagBytes))
	target := in.WebhookURL
	if in.WebhookURLSecret != "" {
		u, err := a.Open.Secrets.Resolve(in.WebhookURLSecret)
		if err != nil {
			return errclass.Permanent(fmt.Errorf("alerts.webhook_url_secret: %w", err))
		}
		target = strings.TrimSpace(u)
		if !spec.WebhookURLValid(target) {
			return errclass.Permanent(fmt.Errorf("alerts.webhook_url_secret %q: not an http:// or https:// URL", in.WebhookURLSecret))
		}
	}
	if target == "" {
		return nil
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("alert webhook: the URL cannot be used") // its text would repeat the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "skein")
	resp, err := webhookClient.Do(req)
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err // its text repeats the whole URL, tokens included
	}
	// Errors name the host only: the path and query often carry a token.
	if err != nil {
		return fmt.Errorf("alert webhook on %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert webhook on %s: %s", req.URL.Host, resp.Status)
	}
	return nil
}
