package adopt

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// DataKey is the ConfigMap key the server blocks are written under. Its
// suffix is the one AKS's and Gardener's coredns-custom ConfigMaps import
// as server blocks (import custom/*.server), so the same key works there
// and in a ConfigMap of its own.
const DataKey = "hdns.server"

// ConfigMap is one key of one ConfigMap, which hdns owns; the ConfigMap's
// other keys are left as they are, so it may be shared (coredns-custom).
type ConfigMap struct {
	Client          kubernetes.Interface
	Namespace, Name string
	// Key is the data key written; "" means DataKey.
	Key string
}

func (c *ConfigMap) key() string {
	if c.Key == "" {
		return DataKey
	}
	return c.Key
}

// Write makes the key hold content and reports whether it wrote: a key
// that already holds content is not rewritten. It updates with the
// resourceVersion it read, reading again on a conflict, and creates the
// ConfigMap when it is missing (RBAC that allows get and update on it by
// name alone makes a missing ConfigMap an error).
func (c *ConfigMap) Write(ctx context.Context, content string) (wrote bool, err error) {
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wrote = false
		cm, err := cms.Get(ctx, c.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			cm = &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name},
				Data:       map[string]string{c.key(): content},
			}
			_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "hdns"})
			wrote = err == nil
			return err
		}
		if err != nil {
			return err
		}
		if v, ok := cm.Data[c.key()]; ok && v == content {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = make(map[string]string, 1)
		}
		cm.Data[c.key()] = content
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "hdns"})
		wrote = err == nil
		return err
	})
	if err != nil {
		return false, fmt.Errorf("adopt: write ConfigMap %s/%s key %s: %w", c.Namespace, c.Name, c.key(), err)
	}
	return wrote, nil
}

// Keeper keeps Target's key equal to Corefile's rendering of View. Every
// replica of hdns may run one: each renders the same bytes from the same
// Services and writes only when the key's content differs, so replicas
// that agree never write twice and never fight; a replica whose watch
// lags can write an older set until its own view catches up, which it
// then writes itself. It writes only when its own view changed, never
// on a timer nor in answer to the ConfigMap, so no two replicas loop.
type Keeper struct {
	View   *View
	Target *ConfigMap
	// Corefile shapes the blocks. When its Upstreams is empty, the View's
	// upstream Service's addresses are used, and nothing is written until
	// that Service is seen with a cluster IP.
	Corefile Corefile
	// Delay gathers the changes of a burst (a rollout, a kubectl apply of
	// many Services) into one write; 0 means 1s.
	Delay time.Duration
	// Log receives writes and failures; nil logs nowhere.
	Log *slog.Logger
}

// Run writes after the source's first sync and after every change of the
// View until ctx is done. A failed write is retried, with a backoff up to
// a minute, until it succeeds or the View changes again.
func (k *Keeper) Run(ctx context.Context) {
	delay := k.Delay
	if delay <= 0 {
		delay = time.Second
	}
	last, written := "", false
	retryAfter := time.Duration(0)
	for {
		if !k.wait(ctx, retryAfter) || !sleep(ctx, delay) {
			return
		}
		content, ok := k.render()
		if !ok || (written && content == last) {
			retryAfter = 0
			continue
		}
		wrote, err := k.Target.Write(ctx, content)
		if err != nil {
			retryAfter = min(max(2*retryAfter, delay), time.Minute)
			k.log(slog.LevelError, "cannot write CoreDNS server blocks; retrying", "err", err, "retry", retryAfter)
			continue
		}
		retryAfter, last, written = 0, content, true
		if wrote {
			k.log(slog.LevelInfo, "wrote CoreDNS server blocks", "configmap", k.Target.Namespace+"/"+k.Target.Name, "key", k.Target.key(), "bytes", len(content))
		}
	}
}

// wait waits for a change of the View, or retryAfter when it is not 0,
// and reports whether ctx is alive.
func (k *Keeper) wait(ctx context.Context, retryAfter time.Duration) bool {
	var retry <-chan time.Time
	if retryAfter > 0 {
		t := time.NewTimer(retryAfter)
		defer t.Stop()
		retry = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-k.View.Changed():
	case <-retry:
	}
	return true
}

// render returns what the key should hold, false while the source has
// not synced or hdns's address is unknown.
func (k *Keeper) render() (string, bool) {
	opted, upstream, synced := k.View.State()
	if !synced {
		return "", false
	}
	cf := k.Corefile
	if len(cf.Upstreams) == 0 {
		if len(upstream) == 0 {
			k.log(slog.LevelWarn, "hdns's Service has no cluster IP yet; CoreDNS server blocks wait for it", "service", k.View.upstream.Namespace+"/"+k.View.upstream.Name)
			return "", false
		}
		cf.Upstreams = upstream
	}
	return cf.Render(opted), true
}

func (k *Keeper) log(level slog.Level, msg string, args ...any) {
	if k.Log != nil {
		k.Log.Log(context.Background(), level, msg, args...)
	}
}

// sleep waits d or until ctx is done, and reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
