//go:build !linux

package ws

// Without io_uring a Batch makes one write(2) per write.

type ring struct{}

// minRingBatch is never reached: there is no ring to submit to.
const minRingBatch = 1 << 30

// SetBatchRing does nothing here: there is no io_uring to use.
func SetBatchRing(bool) {}

// BatchRing reports false: Batch writes one by one here.
func BatchRing() bool { return false }

func (b *Batch) submitRing() {}
