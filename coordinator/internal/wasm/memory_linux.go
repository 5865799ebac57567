package wasm

import (
	"context"
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// A reservation backs an instance's linear memory with address space
// reserved up front for the memory's maximum, so that the memory grows in
// place. wazero's own linear memory is a Go slice that grows by copying
// into a new one, each time leaving the old one to the garbage collector:
// a Go module, whose memory grows in steps from a few MiB, left its host
// with several times its memory in the heap. Pages of a reservation take
// no memory until the module writes to them.
//
// The mapping outlives the module's Free: it is released by release, once
// the instance's run has returned, so that closing the runtime while a
// module still runs can never unmap memory its code is using.
type reservation struct {
	mu   sync.Mutex
	maps [][]byte
}

// with returns ctx, which instantiates a module, with r as its
// memory allocator.
func (r *reservation) with(ctx context.Context) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(r.allocate))
}

func (r *reservation) allocate(_, max uint64) experimental.LinearMemory {
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{} // no address space: as wazero does
	}
	r.mu.Lock()
	r.maps = append(r.maps, b)
	r.mu.Unlock()
	return &mappedMemory{b: b}
}

// release unmaps the memory of the instance; its run must have returned.
func (r *reservation) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.maps {
		syscall.Munmap(b)
	}
	r.maps = nil
}

// A mappedMemory is a linear memory in a reservation.
type mappedMemory struct{ b []byte }

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.b)) {
		return nil // beyond the maximum: the grow fails
	}
	return m.b[:size:size]
}

func (m *mappedMemory) Free() {}

// A sliceMemory grows a Go slice, as wazero does without an allocator.
type sliceMemory struct{ b []byte }

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if n := uint64(len(m.b)); size > n {
		m.b = append(m.b, make([]byte, size-n)...)
	}
	return m.b[:size]
}

func (m *sliceMemory) Free() {}
