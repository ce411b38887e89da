// Extra Go benchmarks beside Go's own context/benchmark_test.go, so that
// ctxtree's ports in benches/go_shapes.rs can be read part by part:
// BenchmarkCommonParentCancel split into its context operations and its
// dummy work. Run by scripts/go-bench.sh.
package ctxtreebench

import (
	"context"
	"testing"
)

type key struct{}

// The context half of Go's BenchmarkCommonParentCancel (no dummy work).
func BenchmarkCommonParentCancelContextsOnly(b *testing.B) {
	root := context.WithValue(context.Background(), key{}, "value")
	shared, sharedcancel := context.WithCancel(root)
	defer sharedcancel()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithCancel(shared)
			if ctx.Value(key{}).(string) != "value" {
				b.Fatal("should not be reached")
			}
			cancel()
		}
	})
}

// The dummy-work half of Go's BenchmarkCommonParentCancel.
func BenchmarkCommonParentCancelWorkOnly(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		x := 0
		for pb.Next() {
			for i := 0; i < 100; i++ {
				x /= x + 1
			}
			for i := 0; i < 100; i++ {
				x /= x + 1
			}
		}
	})
}

// Derive + cancel from a live parent on one goroutine: ctxtree's
// derive_cancel_drop.
func BenchmarkDeriveCancel(b *testing.B) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	for i := 0; i < b.N; i++ {
		_, cancel := context.WithCancel(parent)
		cancel()
	}
}
