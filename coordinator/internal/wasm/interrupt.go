package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// How a module is made interruptible.
//
// wazero's WithCloseOnContextDone puts a check at every loop header of the
// compiled code, and each check leaves the compiled code for Go and comes
// back (it must reach Go now and then: compiled code cannot be preempted,
// so a module looping in it would hold up the coordinator's garbage
// collector, which stops every goroutine). That costs tens of
// nanoseconds a loop header, and Go compiled to WebAssembly goes through a
// loop header at every jump in a function: a Go module ran 3 to 4 times
// slower with the checks (json.Unmarshal about 6 times).
//
// instrument rewrites the module instead, so that every loop header
// counts down a global of the module's own, and only when it reaches zero
// (every checkInterval loop headers) calls the host function checkName,
// which leaves for Go, where the goroutine can be preempted, and ends the
// module when the instance's context is done. The counter costs a few
// instructions of compiled code a loop header. A module that loops
// without calling out is stopped within checkInterval loop headers, as
// wazero's check stops it at the next one: in microseconds either way.

const (
	// checkModule and checkName name the host function the instrumented
	// module imports.
	checkModule = "plugbus_sandbox"
	checkName   = "check"
	// checkInterval is how many loop headers the module goes through
	// between two calls to the host.
	checkInterval = 4096
)

// errNotInstrumented: the module uses something instrument does not
// rewrite, or is not a module it can read; wazero's own checks are used
// instead (and wazero says what is wrong with a module that is not one).
var errNotInstrumented = errors.New("wasm: module not instrumented")

// errRewriteBug: instrument itself went wrong on a module (it wraps
// errNotInstrumented, so the module still runs, with wazero's checks,
// and no module can crash the coordinator). FuzzInstrument looks for it.
var errRewriteBug = errors.New("a bug in the rewrite")

// instantiateCheck adds the host module whose function the instrumented
// modules call: it ends the module when ctx (the instance's) is done.
func instantiateCheck(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(checkModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, _ []uint64) {
			if err := ctx.Err(); err != nil {
				code := sys.ExitCodeContextCanceled
				if errors.Is(err, context.DeadlineExceeded) {
					code = sys.ExitCodeDeadlineExceeded
				}
				panic(sys.NewExitError(code))
			}
		}), nil, nil).
		Export(checkName).
		Instantiate(ctx)
	return err
}

// instrument returns the module bin with a countdown at every loop header
// and a call to the host every checkInterval of them (see above), or
// errNotInstrumented wrapped with the reason when bin uses something it
// does not rewrite (the GC or exception-handling proposals, for
// instance). Adding the import shifts the index of every function the
// module defines, so calls, exports, the start function, element and
// global initializers and the name section are renumbered; DWARF
// sections, whose code offsets would be wrong, are dropped.
func instrument(bin []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok && errors.Is(e, errNotInstrumented) {
				out, err = nil, e
				return
			}
			out, err = nil, fmt.Errorf("%w: %w: %v", errNotInstrumented, errRewriteBug, r)
		}
	}()
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" || bin[4] != 1 || bin[5] != 0 || bin[6] != 0 || bin[7] != 0 {
		return nil, fmt.Errorf("%w: not a WebAssembly 1.0 binary module", errNotInstrumented)
	}
	var secs []section
	r := &reader{b: bin, i: 8}
	for r.i < len(r.b) {
		id := r.byte()
		n := int(r.u32())
		secs = append(secs, section{id: id, body: r.bytes(n)})
	}
	// The counts the rewrite needs: function imports and globals (the
	// new function and global go after them), and the type of the check.
	var m rewrite
	typeIdx, haveTypes := -1, false
	for _, s := range secs {
		r := &reader{b: s.body}
		switch s.id {
		case secType:
			haveTypes = true
			n := int(r.u32())
			for i := range n {
				if r.byte() != 0x60 {
					fail("a type that is not a function type")
				}
				np := r.u32()
				r.bytes(int(np))
				nr := r.u32()
				r.bytes(int(nr))
				if np == 0 && nr == 0 && typeIdx < 0 {
					typeIdx = i
				}
			}
			m.types = n
		case secImport:
			n := int(r.u32())
			for range n {
				mod := r.name()
				r.name()
				if mod == checkModule {
					fail("it imports from " + checkModule)
				}
				switch kind := r.byte(); kind {
				case 0: // function
					r.u32()
					m.funcImports++
				case 1: // table
					r.refType()
					r.limits()
				case 2: // memory
					r.limits()
				case 3: // global
					r.valType()
					r.byte()
					m.globals++
				default:
					fail(fmt.Sprintf("an import of kind %d", kind))
				}
			}
		case secGlobal:
			m.globals += int(r.u32())
		}
	}
	if typeIdx < 0 {
		typeIdx = m.types
	}
	m.fuel = m.globals // the new global's index: after every other
	m.check = m.funcImports

	w := append(make([]byte, 0, len(bin)+len(bin)/4), bin[:8]...)
	put := func(id byte, body []byte) {
		w = append(w, id)
		w = appendU32(w, uint32(len(body)))
		w = append(w, body...)
	}
	addedImport, addedGlobal := false, false
	for _, s := range secs {
		// Sections the module lacks are added before the first section
		// that must follow them.
		if !haveTypes && !addedImport && s.id != secCustom && s.id > secType {
			put(secType, append(appendU32(nil, 1), 0x60, 0, 0))
			haveTypes = true
		}
		if !addedImport && s.id != secCustom && s.id > secImport {
			put(secImport, m.importSection(nil, typeIdx))
			addedImport = true
		}
		if !addedGlobal && s.id != secCustom && s.id > secGlobal {
			put(secGlobal, m.globalSection(nil))
			addedGlobal = true
		}
		switch s.id {
		case secType:
			if typeIdx == m.types {
				body := appendU32(nil, uint32(m.types+1))
				rr := &reader{b: s.body}
				rr.u32()
				body = append(body, s.body[rr.i:]...)
				body = append(body, 0x60, 0, 0)
				put(s.id, body)
			} else {
				put(s.id, s.body)
			}
		case secImport:
			put(s.id, m.importSection(s.body, typeIdx))
			addedImport = true
		case secGlobal:
			put(s.id, m.globalSection(s.body))
			addedGlobal = true
		case secExport:
			put(s.id, m.exportSection(s.body))
		case secStart:
			put(s.id, appendU32(nil, m.fn((&reader{b: s.body}).u32())))
		case secElement:
			put(s.id, m.elementSection(s.body))
		case secCode:
			put(s.id, m.codeSection(s.body))
		case secCustom:
			name := (&reader{b: s.body}).name()
			switch {
			case strings.HasPrefix(name, ".debug_"):
				// Code offsets: wrong after the rewrite.
			case name == "name":
				put(s.id, m.nameSection(s.body))
			default:
				put(s.id, s.body)
			}
		case secTag:
			fail("exception handling")
		default:
			put(s.id, s.body)
		}
	}
	if !addedImport {
		if !haveTypes {
			put(secType, append(appendU32(nil, 1), 0x60, 0, 0))
		}
		put(secImport, m.importSection(nil, typeIdx))
	}
	if !addedGlobal {
		put(secGlobal, m.globalSection(nil))
	}
	return w, nil
}

// Section ids.
const (
	secCustom  = 0
	secType    = 1
	secImport  = 2
	secGlobal  = 6
	secExport  = 7
	secStart   = 8
	secElement = 9
	secCode    = 10
	secTag     = 13
)

type section struct {
	id   byte
	body []byte
}

// rewrite holds what renumbering needs.
type rewrite struct {
	types       int
	funcImports int // function imports before the new one
	globals     int // globals, imported and defined
	fuel        int // index of the new global
	check       int // index of the new import
}

// fn is the new index of function i.
func (m *rewrite) fn(i uint32) uint32 {
	if int(i) >= m.funcImports {
		return i + 1
	}
	return i
}

func (m *rewrite) importSection(body []byte, typeIdx int) []byte {
	var n uint32
	r := &reader{b: body}
	if body != nil {
		n = r.u32()
	}
	out := appendU32(nil, n+1)
	out = append(out, body[r.i:]...)
	out = appendName(out, checkModule)
	out = appendName(out, checkName)
	out = append(out, 0)
	return appendU32(out, uint32(typeIdx))
}

func (m *rewrite) globalSection(body []byte) []byte {
	var n uint32
	r := &reader{b: body}
	out := []byte(nil)
	if body != nil {
		n = r.u32()
	}
	out = appendU32(out, n+1)
	for range n {
		out = append(out, r.bytes(r.valTypeLen())...) // type
		out = append(out, r.byte())                   // mutability
		out = m.constExpr(out, r)
	}
	// (global (mut i32) (i32.const checkInterval))
	out = append(out, 0x7f, 1, 0x41)
	out = appendS32(out, checkInterval)
	return append(out, 0x0b)
}

func (m *rewrite) exportSection(body []byte) []byte {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n)
	for range n {
		out = appendName(out, r.name())
		kind := r.byte()
		idx := r.u32()
		if kind == 0 {
			idx = m.fn(idx)
		}
		out = append(out, kind)
		out = appendU32(out, idx)
	}
	return out
}

func (m *rewrite) elementSection(body []byte) []byte {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(nil, n)
	for range n {
		flags := r.u32()
		out = appendU32(out, flags)
		if flags > 7 {
			fail(fmt.Sprintf("an element segment with flags %d", flags))
		}
		if flags&2 != 0 && flags&1 == 0 { // an explicit table index
			out = appendU32(out, r.u32())
		}
		if flags&1 == 0 { // active: an offset
			out = m.constExpr(out, r)
		}
		if flags&3 != 0 { // elemkind or reftype
			if flags&4 != 0 {
				out = append(out, r.bytes(r.valTypeLen())...)
			} else {
				out = append(out, r.byte())
			}
		}
		k := r.u32()
		out = appendU32(out, k)
		for range k {
			if flags&4 != 0 {
				out = m.constExpr(out, r)
			} else {
				out = appendU32(out, m.fn(r.u32()))
			}
		}
	}
	return out
}

// constExpr copies a constant expression, renumbering ref.func.
func (m *rewrite) constExpr(out []byte, r *reader) []byte {
	for {
		start := len(out)
		op := r.peek()
		out = m.instr(out, r)
		if op == 0x0b && len(out) == start+1 {
			return out
		}
	}
}

func (m *rewrite) codeSection(body []byte) []byte {
	r := &reader{b: body}
	n := r.u32()
	out := appendU32(make([]byte, 0, len(body)+len(body)/4), n)
	var fn []byte
	for range n {
		size := int(r.u32())
		fr := &reader{b: r.bytes(size)}
		fn = fn[:0]
		locals := fr.u32()
		fn = appendU32(fn, locals)
		for range locals {
			fn = appendU32(fn, fr.u32())
			fn = append(fn, fr.bytes(fr.valTypeLen())...)
		}
		for fr.i < len(fr.b) {
			fn = m.instr(fn, fr)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	return out
}

// nameSection renumbers the function names, and the local and label
// names, which are by function; other subsections are kept.
func (m *rewrite) nameSection(body []byte) []byte {
	r := &reader{b: body}
	out := appendName(nil, r.name())
	for r.i < len(r.b) {
		id := r.byte()
		sub := &reader{b: r.bytes(int(r.u32()))}
		var s []byte
		switch id {
		case 1: // function names
			n := sub.u32()
			s = appendU32(s, n)
			for range n {
				s = appendU32(s, m.fn(sub.u32()))
				s = appendName(s, sub.name())
			}
		case 2, 3: // local names, label names: by function
			n := sub.u32()
			s = appendU32(s, n)
			for range n {
				s = appendU32(s, m.fn(sub.u32()))
				k := sub.u32()
				s = appendU32(s, k)
				for range k {
					s = appendU32(s, sub.u32())
					s = appendName(s, sub.name())
				}
			}
		default:
			s = sub.b
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(s)))
		out = append(out, s...)
	}
	return out
}

// instr copies one instruction from r to out: calls and ref.func
// renumbered, and after each loop the countdown:
//
//	global.get $fuel
//	i32.eqz
//	if
//	  i32.const checkInterval
//	  global.set $fuel
//	  call $check
//	end
//	global.get $fuel
//	i32.const 1
//	i32.sub
//	global.set $fuel
//
// which leaves the operand stack as it found it.
func (m *rewrite) instr(out []byte, r *reader) []byte {
	start := r.i
	op := r.byte()
	switch {
	case op == 0x02 || op == 0x04: // block, if
		r.blockType()
	case op == 0x03: // loop
		r.blockType()
		out = append(out, r.b[start:r.i]...)
		out = append(out, 0x23)
		out = appendU32(out, uint32(m.fuel))
		out = append(out, 0x45, 0x04, 0x40, 0x41)
		out = appendS32(out, checkInterval)
		out = append(out, 0x24)
		out = appendU32(out, uint32(m.fuel))
		out = append(out, 0x10)
		out = appendU32(out, uint32(m.check))
		out = append(out, 0x0b, 0x23)
		out = appendU32(out, uint32(m.fuel))
		out = append(out, 0x41, 0x01, 0x6b, 0x24)
		return appendU32(out, uint32(m.fuel))
	case op == 0x10 || op == 0x12 || op == 0xd2: // call, return_call, ref.func
		out = append(out, op)
		return appendU32(out, m.fn(r.u32()))
	case op <= 0x01 || op == 0x05 || op == 0x0b || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1 || (op >= 0x45 && op <= 0xc4):
		// no immediate
	case op == 0x0c || op == 0x0d || (op >= 0x20 && op <= 0x26) || op == 0x3f || op == 0x40:
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for range n + 1 {
			r.u32()
		}
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select t*
		n := r.u32()
		for range n {
			r.bytes(r.valTypeLen())
		}
	case op >= 0x28 && op <= 0x3e:
		r.memArg()
	case op == 0x41 || op == 0x42:
		r.sleb()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		r.bytes(r.valTypeLen())
	case op == 0xfc:
		switch sub := r.u32(); {
		case sub <= 7: // saturating truncations
		case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init, memory.copy, table.init, table.copy
			r.u32()
			r.u32()
		case sub <= 17:
			r.u32()
		default:
			fail(fmt.Sprintf("instruction 0xfc %d", sub))
		}
	case op == 0xfd:
		switch sub := r.u32(); {
		case sub <= 11 || sub == 92 || sub == 93: // loads and stores
			r.memArg()
		case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
			r.bytes(16)
		case sub >= 21 && sub <= 34: // lanes
			r.byte()
		case sub >= 84 && sub <= 91: // load and store lane
			r.memArg()
			r.byte()
		case sub <= 0x113:
			// no immediate (relaxed SIMD included)
		default:
			fail(fmt.Sprintf("instruction 0xfd %d", sub))
		}
	case op == 0xfe:
		if sub := r.u32(); sub == 3 { // atomic.fence
			r.byte()
		} else {
			r.memArg()
		}
	default:
		fail(fmt.Sprintf("instruction 0x%02x", op))
	}
	return append(out, r.b[start:r.i]...)
}

// fail stops instrument with errNotInstrumented.
func fail(why string) {
	panic(fmt.Errorf("%w: %s", errNotInstrumented, why))
}

// A reader decodes the binary format; a module it cannot read fails with
// errNotInstrumented (wazero then reports what is wrong with it).
type reader struct {
	b []byte
	i int
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		fail("truncated")
	}
	c := r.b[r.i]
	r.i++
	return c
}

// peek is the next byte, left to be read.
func (r *reader) peek() byte {
	if r.i >= len(r.b) {
		fail("truncated")
	}
	return r.b[r.i]
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.i+n > len(r.b) {
		fail("truncated")
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b
}

func (r *reader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	fail("bad LEB128")
	return 0
}

// sleb skips a signed LEB128 of up to 64 bits.
func (r *reader) sleb() {
	for range 10 {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	fail("bad LEB128")
}

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

// valTypeLen is the length of the value type at r: one byte, or a
// reference type with a heap type index.
func (r *reader) valTypeLen() int {
	if r.i >= len(r.b) {
		fail("truncated")
	}
	switch c := r.b[r.i]; c {
	case 0x63, 0x64: // (ref null ht), (ref ht): typed references
		fail("typed references")
	}
	return 1
}

func (r *reader) valType() { r.bytes(r.valTypeLen()) }

func (r *reader) refType() { r.valType() }

func (r *reader) limits() {
	flags := r.byte()
	if flags > 7 {
		fail("memory or table limits")
	}
	if flags&4 != 0 { // 64-bit
		fail("64-bit memory")
	}
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
}

func (r *reader) blockType() {
	if r.i >= len(r.b) {
		fail("truncated")
	}
	switch c := r.b[r.i]; {
	case c == 0x40 || (c >= 0x6f && c <= 0x7f && c != 0x78 && c != 0x77):
		r.i++ // empty, or one value type
	case c == 0x63 || c == 0x64:
		fail("typed references")
	default:
		r.sleb() // a type index
	}
}

func (r *reader) memArg() {
	align := r.u32()
	if align&0x40 != 0 { // multiple memories: a memory index
		r.u32()
	}
	r.u32() // offset
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
