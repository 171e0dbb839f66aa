package temporalx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/skein-dts/skein/pkg/secrets"
)

// Payload encryption, optional: with SKEIN_PAYLOAD_KEY naming a worker secret that holds a
// 256-bit key (base64 or hex), every payload (spec, status, activity inputs and results, signals)
// is sealed with AES-256-GCM before it leaves the process, so the history holds nothing readable
// but the task's id. The key's secret name is its id, kept in the payload's metadata:
// SKEIN_PAYLOAD_OLD_KEYS (comma-separated secret names) lists the keys payloads written before a
// rotation were sealed with. The worker, `skein` and `skein codec-server` (for the Temporal UI and
// CLI) read the same variables.

// Metadata of an encrypted payload.
const (
	EncodingEncrypted = "binary/encrypted"
	MetadataKeyID     = "encryption-key-id"
)

// EncryptionCodec seals payloads with the current key and opens those of any known key.
type EncryptionCodec struct {
	current string
	keys    map[string]cipher.AEAD
}

// NewEncryptionCodec builds a codec from keys by id; current seals.
func NewEncryptionCodec(current string, keys map[string][]byte) (*EncryptionCodec, error) {
	c := &EncryptionCodec{current: current, keys: map[string]cipher.AEAD{}}
	for id, key := range keys {
		if len(key) != 32 {
			return nil, fmt.Errorf("payload key %q: %d bytes, want 32 (AES-256)", id, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %w", id, err)
		}
		c.keys[id] = aead
	}
	if _, ok := c.keys[current]; !ok {
		return nil, fmt.Errorf("payload key %q: not among the keys", current)
	}
	return c, nil
}

// Encode seals each payload (its metadata included) under the current key.
func (c *EncryptionCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.keys[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, err
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, err
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{converter.MetadataEncoding: []byte(EncodingEncrypted), MetadataKeyID: []byte(c.current)},
			Data:     aead.Seal(nonce, nonce, plain, []byte(c.current)),
		}
	}
	return out, nil
}

// Decode opens sealed payloads and leaves the others as they are.
func (c *EncryptionCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.keys[id]
		if !ok {
			return payloads, fmt.Errorf("payload sealed with key %q, which this process does not have (SKEIN_PAYLOAD_KEY, SKEIN_PAYLOAD_OLD_KEYS)", id)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return payloads, errors.New("sealed payload too short")
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return payloads, fmt.Errorf("open payload sealed with key %q: %w", id, err)
		}
		var inner commonpb.Payload
		if err := proto.Unmarshal(plain, &inner); err != nil {
			return payloads, fmt.Errorf("open payload sealed with key %q: %w", id, err)
		}
		out[i] = &inner
	}
	return out, nil
}

var (
	encryptionOnce sync.Once
	encryption     *EncryptionCodec
	encryptionErr  error
)

// Encryption returns the process's payload encryption codec from the environment: nil when
// SKEIN_PAYLOAD_KEY is not set.
func Encryption() (*EncryptionCodec, error) {
	encryptionOnce.Do(func() {
		encryption, encryptionErr = EncryptionFrom(secrets.Resolver{}, os.Getenv)
	})
	return encryption, encryptionErr
}

// EncryptionFrom reads SKEIN_PAYLOAD_KEY and SKEIN_PAYLOAD_OLD_KEYS with getenv and the keys with
// r: nil when no key is configured.
func EncryptionFrom(r secrets.Resolver, getenv func(string) string) (*EncryptionCodec, error) {
	current := strings.TrimSpace(getenv("SKEIN_PAYLOAD_KEY"))
	if current == "" {
		return nil, nil
	}
	r.Getenv = getenv
	names := []string{current}
	for _, n := range strings.Split(getenv("SKEIN_PAYLOAD_OLD_KEYS"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	keys := map[string][]byte{}
	for _, n := range names {
		text, err := r.Resolve(n)
		if err != nil {
			return nil, fmt.Errorf("payload key: %w", err)
		}
		key, err := decodeKey(strings.TrimSpace(text))
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %w", n, err)
		}
		keys[n] = key
	}
	return NewEncryptionCodec(current, keys)
}

// decodeKey reads a 32-byte key written in hex or base64.
func decodeKey(s string) ([]byte, error) {
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, errors.New("not 32 bytes in hex or base64 (openssl rand -hex 32)")
}
