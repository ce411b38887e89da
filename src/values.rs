//! Request-scoped values: a chain of immutable value layers, kept beside the
//! cancel chain so that cancel nodes never carry values and a lookup never
//! visits a cancel node.
//!
//! A `Context` holds its nearest cancel node *and* its nearest value layer.
//! `with_value` adds a layer holding one binding (the value's type is its
//! key); `without_cancel` adds a *detach* layer with no binding, which keeps
//! the values above it visible and remembers the cancel part it detached from
//! (only for `Display`). Deriving a cancel child copies the value pointer, so
//! value layers are transparent to cancellation.
//!
//! Invariants:
//! - **V1** A layer is immutable once allocated and holds one count of its
//!   parent layer, so every ancestor of a live layer is alive: a raw pointer
//!   from a layer to one of its ancestors (a chunk start, a table slot) is
//!   valid for as long as that layer is.
//! - **V2** Layers form chunks of at most [`CHUNK`] consecutive layers. The
//!   first layer of a chunk owns a table of every binding visible just above
//!   it (the nearest layer for each key); every layer knows its position in
//!   its chunk. A lookup checks at most `CHUNK` layers, nearest first, then
//!   probes that one table: nearest wins, and the cost does not grow with the
//!   depth of either chain.
//! - **V3** The table of a new chunk is built once, when the previous chunk is
//!   full, from the previous table plus the previous chunk's `CHUNK`
//!   bindings. A table holds at most one entry per distinct key type, so
//!   memory is O(distinct keys) per `CHUNK` layers.
//! - **V4** The count is `Arc`'s protocol (Relaxed increments, Release
//!   decrements, Acquire before freeing) and freeing walks up the chain in a
//!   loop, so dropping a million-deep value chain does not recurse: freeing
//!   takes the parent out of the layer before dropping the layer, then
//!   continues with the parent in the loop.
//!
//! There is no concurrent mutation here at all: layers are published by the
//! `Context` that owns the first count, and shared immutably afterwards.

use std::any::{type_name, TypeId};
use std::hash::{Hash, Hasher};
use std::mem::ManuallyDrop;
use std::process::abort;
use std::ptr::{self, NonNull};

use crate::sync::{AtomicUsize, Ordering};

/// Layers per chunk (V2): a lookup checks at most this many layers before
/// its one table probe.
pub(crate) const CHUNK: u8 = 8;

/// What a layer adds to the chain.
enum Binding {
    /// `with_value`: the value's type is its key.
    Value {
        key: TypeId,
        hash: u64,
        type_name: &'static str,
    },
    /// `without_cancel`: no binding; the layer's payload is the cancel part it
    /// detached from, of type `origin`.
    Detach { origin: TypeId },
}

/// The common prefix of every layer; `Layer<V>` adds the payload.
struct Header {
    refs: AtomicUsize,
    /// The next layer up, or `None` at the top (V1). Taken only when freeing.
    parent: Option<ValuesRef>,
    binding: Binding,
    /// The address of the cancel node of the context this layer was derived
    /// from (0 below a root), to interleave the two chains in `Display`.
    anchor: usize,
    /// Position in the chunk: 0 for its first layer (V2).
    chunk_pos: u8,
    /// The first layer of this chunk (an ancestor, V1); null for the first
    /// layer itself.
    chunk_start: *const Header,
    /// Bindings visible above this chunk; only on a chunk's first layer.
    table: Option<Box<Table>>,
    /// Drops the whole `Layer<V>` this header starts.
    drop_layer: unsafe fn(*mut Header),
}

/// A layer: `repr(C)` puts the header at offset 0, so a `*const Header` names
/// the whole layer and can be cast back once the payload type is known.
#[repr(C)]
struct Layer<V> {
    header: Header,
    value: V,
}

/// A counted pointer to a value layer (V4).
pub(crate) struct ValuesRef(NonNull<Header>);

// SAFETY: a layer's payload is `Send + Sync` (the bounds of `bind` and
// `detach`), its header is atomic or immutable after construction (V1), and
// its raw pointers only name ancestors that it keeps alive.
unsafe impl Send for ValuesRef {}
// SAFETY: as above.
unsafe impl Sync for ValuesRef {}

impl ValuesRef {
    /// A layer binding `value` (keyed by `T`) below `parent`.
    pub(crate) fn bind<T: Send + Sync + 'static>(
        parent: Option<&ValuesRef>,
        anchor: usize,
        value: T,
    ) -> ValuesRef {
        let key = TypeId::of::<T>();
        let binding = Binding::Value {
            key,
            hash: hash_of(key),
            type_name: type_name::<T>(),
        };
        ValuesRef::alloc(parent, anchor, binding, value)
    }

    /// A detach layer below `parent` that remembers `origin`.
    pub(crate) fn detach<O: Send + Sync + 'static>(
        parent: Option<&ValuesRef>,
        origin: O,
    ) -> ValuesRef {
        let binding = Binding::Detach {
            origin: TypeId::of::<O>(),
        };
        ValuesRef::alloc(parent, 0, binding, origin)
    }

    fn alloc<V>(
        parent: Option<&ValuesRef>,
        anchor: usize,
        binding: Binding,
        value: V,
    ) -> ValuesRef {
        let (chunk_pos, chunk_start, table) = match parent {
            Some(p) if p.header().chunk_pos + 1 < CHUNK => {
                (p.header().chunk_pos + 1, p.header().chunk_start(), None)
            }
            Some(p) => (0, ptr::null(), Some(Box::new(Table::below(p)))),
            None => (0, ptr::null(), None),
        };
        let layer = Box::new(Layer {
            header: Header {
                refs: AtomicUsize::new(1),
                parent: parent.cloned(),
                binding,
                anchor,
                chunk_pos,
                chunk_start,
                table,
                drop_layer: drop_layer::<V>,
            },
            value,
        });
        // SAFETY: `Box::into_raw` is never null; the header is at offset 0.
        ValuesRef(unsafe { NonNull::new_unchecked(Box::into_raw(layer) as *mut Header) })
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: we own a count, so the layer is alive (V4).
        unsafe { self.0.as_ref() }
    }

    /// The nearest value bound with type `T` (V2).
    #[inline]
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let key = TypeId::of::<T>();
        let mut layer = self.header();
        loop {
            if layer.key() == Some(key) {
                // SAFETY: the key is `T`'s, so the layer is a `Layer<T>`, alive
                // while `self` is (V1).
                return Some(unsafe { payload::<T>(layer) });
            }
            if layer.chunk_pos == 0 {
                break;
            }
            layer = layer.parent.as_ref()?.header();
        }
        let found = layer.table.as_ref()?.find(key, hash_of(key))?;
        // SAFETY: the table maps `T`'s key to a `Layer<T>` above `self`.
        Some(unsafe { payload::<T>(&*found) })
    }

    pub(crate) fn parent(&self) -> Option<&ValuesRef> {
        self.header().parent.as_ref()
    }

    /// The key's type name of a value layer; `None` for a detach layer.
    pub(crate) fn type_name(&self) -> Option<&'static str> {
        match self.header().binding {
            Binding::Value { type_name, .. } => Some(type_name),
            Binding::Detach { .. } => None,
        }
    }

    pub(crate) fn anchor(&self) -> usize {
        self.header().anchor
    }

    /// The origin a detach layer remembers; `None` for a value layer.
    pub(crate) fn origin<O: 'static>(&self) -> Option<&O> {
        match self.header().binding {
            Binding::Detach { origin } => {
                assert_eq!(origin, TypeId::of::<O>(), "detach origin type");
                // SAFETY: a detach layer with origin type `O` is a `Layer<O>`.
                Some(unsafe { payload::<O>(self.header()) })
            }
            Binding::Value { .. } => None,
        }
    }

    pub(crate) fn ptr_eq(a: &ValuesRef, b: &ValuesRef) -> bool {
        a.0 == b.0
    }
}

impl Header {
    fn key(&self) -> Option<TypeId> {
        match self.binding {
            Binding::Value { key, .. } => Some(key),
            Binding::Detach { .. } => None,
        }
    }

    fn chunk_start(&self) -> *const Header {
        if self.chunk_start.is_null() {
            self
        } else {
            self.chunk_start
        }
    }
}

/// The payload of a layer known to be a `Layer<V>`.
///
/// # Safety
/// `header` starts a live `Layer<V>`; the result lives no longer than it.
unsafe fn payload<V>(header: &Header) -> &V {
    // SAFETY: forwarded from the caller; `repr(C)` puts the header first.
    unsafe { &(*(header as *const Header as *const Layer<V>)).value }
}

/// # Safety
/// `header` starts a `Layer<V>` from `Box::into_raw` whose last count is gone.
unsafe fn drop_layer<V>(header: *mut Header) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { Box::from_raw(header as *mut Layer<V>) });
}

impl Clone for ValuesRef {
    fn clone(&self) -> ValuesRef {
        // Relaxed: a new count is derived from an existing one, as in `Arc`.
        if self.header().refs.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            abort();
        }
        ValuesRef(self.0)
    }
}

impl Drop for ValuesRef {
    fn drop(&mut self) {
        let mut ptr = self.0;
        loop {
            // SAFETY: we own a count of `ptr`, so the layer is alive.
            let header = unsafe { ptr.as_ref() };
            if header.refs.fetch_sub(1, Ordering::Release) != 1 {
                return;
            }
            // Acquire every earlier release before freeing (as `Arc`; a load
            // rather than a fence so ThreadSanitizer sees it).
            header.refs.load(Ordering::Acquire);
            // The parent is taken first so freeing does not recurse (V4).
            // SAFETY: that was the last count: nobody else can reach the layer.
            let parent = unsafe { (*ptr.as_ptr()).parent.take() };
            // SAFETY: as above; `drop_layer` matches the allocation's type.
            unsafe { (header.drop_layer)(ptr.as_ptr()) };
            match parent {
                Some(parent) => ptr = ManuallyDrop::new(parent).0,
                None => return,
            }
        }
    }
}

/// Open-addressing table from key to the nearest layer binding it (V2, V3).
struct Table {
    /// Power-of-two length, always with an empty slot (load ≤ 3/4).
    slots: Box<[Slot]>,
    /// Occupied slots: one per distinct key (V3).
    len: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    hash: u64,
    /// The binding layer (an ancestor of the table's owner, V1); null if empty.
    layer: *const Header,
}

impl Table {
    /// The bindings visible at `last`, the last layer of a full chunk: the
    /// chunk's own table, overridden by the chunk's layers, oldest first.
    fn below(last: &ValuesRef) -> Table {
        let mut chunk = Vec::with_capacity(CHUNK as usize);
        let mut layer: &Header = last.header();
        loop {
            chunk.push(layer as *const Header);
            if layer.chunk_pos == 0 {
                break;
            }
            layer = layer
                .parent
                .as_ref()
                .expect("chunk_pos > 0 has a parent")
                .header();
        }
        let inherited = layer.table.as_deref();
        let len = inherited.map_or(0, |t| t.len) + chunk.len();
        let mut table = Table::with_room(len);
        if let Some(old) = inherited {
            for slot in old.slots.iter().filter(|s| !s.layer.is_null()) {
                table.insert(slot.hash, slot.layer);
            }
        }
        for &layer in chunk.iter().rev() {
            // SAFETY: `layer` is `last` or one of its ancestors (V1).
            if let Binding::Value { hash, .. } = unsafe { &(*layer).binding } {
                table.insert(*hash, layer);
            }
        }
        table
    }

    fn with_room(entries: usize) -> Table {
        let len = (entries * 4 / 3 + 1).next_power_of_two().max(8);
        let empty = Slot {
            hash: 0,
            layer: ptr::null(),
        };
        Table {
            slots: vec![empty; len].into_boxed_slice(),
            len: 0,
        }
    }

    fn start(&self, hash: u64) -> usize {
        // Fibonacci hashing: the top bits of the product index the slots.
        let bits = self.slots.len().trailing_zeros();
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// Inserts or replaces the binding for `layer`'s key.
    fn insert(&mut self, hash: u64, layer: *const Header) {
        let mask = self.slots.len() - 1;
        // SAFETY: `layer` is alive (V1) and binds a value.
        let key = unsafe { (*layer).key() };
        let mut i = self.start(hash);
        loop {
            let slot = &mut self.slots[i];
            if slot.layer.is_null() {
                *slot = Slot { hash, layer };
                self.len += 1;
                return;
            }
            // SAFETY: a non-null slot names a live layer (V1).
            if slot.hash == hash && unsafe { (*slot.layer).key() } == key {
                slot.layer = layer;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn find(&self, key: TypeId, hash: u64) -> Option<*const Header> {
        let mask = self.slots.len() - 1;
        let mut i = self.start(hash);
        loop {
            let slot = self.slots[i];
            if slot.layer.is_null() {
                return None;
            }
            // SAFETY: a non-null slot names a live layer (V1).
            if slot.hash == hash && unsafe { (*slot.layer).key() } == Some(key) {
                return Some(slot.layer);
            }
            i = (i + 1) & mask;
        }
    }
}

/// A 64-bit hash of a type's key, computed the same way everywhere.
#[inline]
fn hash_of(key: TypeId) -> u64 {
    struct Fold(u64);
    impl Hasher for Fold {
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 =
                    (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut fold = Fold(0);
    key.hash(&mut fold);
    fold.finish()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct K<const N: usize>(usize);

    #[test]
    fn nearest_wins_across_chunks_and_tables() {
        // 3 keys rebound in turn over many chunks: each lookup must find the
        // nearest binding, whether in the chunk walk or in a table.
        let mut chain: Option<ValuesRef> = None;
        for i in 0..100usize {
            let next = match i % 3 {
                0 => ValuesRef::bind(chain.as_ref(), 0, K::<0>(i)),
                1 => ValuesRef::bind(chain.as_ref(), 0, K::<1>(i)),
                _ => ValuesRef::bind(chain.as_ref(), 0, K::<2>(i)),
            };
            chain = Some(next);
            let c = chain.as_ref().unwrap();
            let last = |k: usize| (0..=i).rev().find(|j| j % 3 == k);
            assert_eq!(c.get::<K<0>>().map(|v| v.0), last(0));
            assert_eq!(c.get::<K<1>>().map(|v| v.0), last(1));
            assert_eq!(c.get::<K<2>>().map(|v| v.0), last(2));
            assert!(c.get::<K<3>>().is_none());
        }
    }

    #[test]
    fn table_grows_with_distinct_keys() {
        macro_rules! bind_all {
            ($chain:ident; $($n:literal)*) => {
                $( $chain = Some(ValuesRef::bind($chain.as_ref(), 0, K::<$n>($n))); )*
            };
        }
        let mut chain: Option<ValuesRef> = None;
        bind_all!(chain; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39);
        let c = chain.unwrap();
        assert_eq!(c.get::<K<0>>().unwrap().0, 0);
        assert_eq!(c.get::<K<17>>().unwrap().0, 17);
        assert_eq!(c.get::<K<39>>().unwrap().0, 39);
        assert!(c.get::<K<40>>().is_none());
    }

    #[test]
    fn detach_layers_are_transparent_to_lookup() {
        let a = ValuesRef::bind(None, 0, 7u32);
        let d = ValuesRef::detach(Some(&a), "origin");
        let b = ValuesRef::bind(Some(&d), 0, 9u64);
        assert_eq!(b.get::<u32>(), Some(&7));
        assert_eq!(b.get::<u64>(), Some(&9));
        assert_eq!(d.origin::<&str>(), Some(&"origin"));
        assert_eq!(b.origin::<&str>(), None);
    }
}

#[cfg(all(test, not(loom)))]
mod layout {
    #[test]
    fn a_layer_header_is_at_most_104_bytes() {
        // docs/design.md §12 quotes this size.
        let size = std::mem::size_of::<super::Header>();
        assert!(size <= 104, "Header is {size} bytes");
    }
}
