package harness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// EtcdPrefix is the API server's etcd key prefix (its --etcd-prefix default).
const EtcdPrefix = "/registry"

// DeleteFromEtcd deletes key from etcd directly, bypassing the API server,
// and returns how many keys were deleted (0 or 1). It works while the API
// server is stopped, which is how a test makes an object vanish during an
// API outage; keys look like EtcdPrefix+"/services/specs/NS/NAME". It uses
// etcd's JSON gateway (POST /v3/kv/deleterange), so it needs no etcd client
// library. The call is bounded by ctx, or DefaultWaitTimeout without a
// deadline.
func (cp *ControlPlane) DeleteFromEtcd(ctx context.Context, key string) (int64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	body, err := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))})
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cp.EtcdURL+"/v3/kv/deleterange", bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: %w", key, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: read reply: %w", key, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("etcd delete %s: HTTP %d: %s", key, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	// The gateway renders int64 fields as JSON strings and omits zeros.
	var reply struct {
		Deleted string `json:"deleted"`
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return 0, fmt.Errorf("etcd delete %s: decode %q: %w", key, data, err)
	}
	if reply.Deleted == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(reply.Deleted, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd delete %s: deleted count %q: %w", key, reply.Deleted, err)
	}
	return n, nil
}
