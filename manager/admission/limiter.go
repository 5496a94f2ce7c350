package admission

import (
	"math"
	"sync"
	"time"
)

// maxBuckets bounds the limiter's memory: past it, buckets that have
// refilled (their key has been quiet) are dropped, and new keys wait.
const maxBuckets = 4096

// Limiter is a set of token buckets, one per key: each key may act burst
// times at once and then rate times a second. A rate of 0 disables it.
type Limiter struct {
	burst float64
	rate  float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a limiter; burst < 1 counts as 1.
func NewLimiter(burst int, rate float64) *Limiter {
	return &Limiter{burst: math.Max(1, float64(burst)), rate: rate, buckets: map[string]*bucket{}}
}

// Enabled reports whether the limiter limits anything.
func (l *Limiter) Enabled() bool { return l.rate > 0 }

// Allow takes one token from the bucket of every key, or from none of
// them: when one is empty it returns false and how long until it has one.
func (l *Limiter) Allow(now time.Time, keys ...string) (time.Duration, bool) {
	if !l.Enabled() {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	bs := make([]*bucket, 0, len(keys))
	for _, k := range keys {
		b := l.buckets[k]
		if b == nil {
			if len(l.buckets) >= maxBuckets {
				l.prune(now)
			}
			if len(l.buckets) >= maxBuckets {
				return time.Duration(float64(time.Second) / l.rate), false
			}
			b = &bucket{tokens: l.burst, last: now}
			l.buckets[k] = b
		}
		l.refill(b, now)
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)/l.rate*float64(time.Second)))
		}
		bs = append(bs, b)
	}
	if wait > 0 {
		return wait, false
	}
	for _, b := range bs {
		b.tokens--
	}
	return 0, true
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	if now.After(b.last) {
		b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
	}
}

// prune drops the buckets that are full again: forgetting them changes nothing.
func (l *Limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}
