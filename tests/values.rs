//! Request-scoped values and `without_cancel`: lookup rules (the type is the
//! key, the nearest binding wins), transparency to cancellation, lifetime
//! after cancellation and after ancestors are dropped, deep chains without
//! recursion, and `Display`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rng::Rng;
use ctxtree::{CancelHandle, Cause, Context, Error};

#[derive(Debug, PartialEq)]
struct RequestId(u64);

#[derive(Debug, PartialEq)]
struct User(&'static str);

/// One key type per `N`: lets a test bind many distinct keys.
#[derive(Debug, PartialEq)]
struct Key<const N: usize>(usize);

#[test]
fn the_type_is_the_key_and_the_nearest_binding_wins() {
    let root = Context::background();
    assert_eq!(root.value::<RequestId>(), None);
    let a = root.with_value(RequestId(1));
    let b = a.with_value(User("ada"));
    let c = b.with_value(RequestId(2));
    assert_eq!(a.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(a.value::<User>(), None);
    assert_eq!(b.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(b.value::<User>(), Some(&User("ada")));
    assert_eq!(c.value::<RequestId>(), Some(&RequestId(2)), "nearest wins");
    assert_eq!(c.value::<User>(), Some(&User("ada")));
    // Distinct types with the same representation are distinct keys.
    let d = c.with_value(7u64);
    assert_eq!(d.value::<u64>(), Some(&7));
    assert_eq!(d.value::<i64>(), None);
    assert_eq!(d.value::<RequestId>(), Some(&RequestId(2)));
}

#[test]
fn a_private_key_type_cannot_be_read_or_shadowed_from_outside() {
    mod app {
        use ctxtree::Context;
        // Private: only `app` can name it, so only `app` can bind or read it.
        struct Secret(&'static str);
        pub fn attach(ctx: &Context) -> Context {
            ctx.with_value(Secret("token"))
        }
        pub fn read(ctx: &Context) -> Option<&'static str> {
            ctx.value::<Secret>().map(|s| s.0)
        }
    }
    let ctx = app::attach(&Context::background()).with_value("token-lookalike");
    assert_eq!(app::read(&ctx), Some("token"));
    assert_eq!(ctx.value::<&str>(), Some(&"token-lookalike"));
}

#[test]
fn value_layers_are_transparent_to_cancellation() {
    let (parent, cancel) = Context::background().with_cancel();
    let valued = parent.with_value(RequestId(9));
    assert!(!valued.is_done());
    let (child, _child_handle) = valued.with_cancel();
    let (grandchild, _gh) = child.with_value(User("bob")).with_cancel();
    cancel.cancel_with_cause(Cause::msg("shutdown"));
    // Synchronous, through the value layers.
    for ctx in [&valued, &child, &grandchild] {
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(ctx.cause().unwrap().to_string(), "shutdown");
    }
    assert_eq!(grandchild.value::<RequestId>(), Some(&RequestId(9)));
    assert_eq!(grandchild.value::<User>(), Some(&User("bob")));
    // A value child of a canceled context is canceled too, and a cancel child
    // of it is born canceled with the same cause.
    let late = valued.with_value(3u8);
    assert!(late.is_done());
    let (born, _h) = late.with_cancel();
    assert_eq!(born.cause().unwrap().to_string(), "shutdown");
    assert_eq!(born.value::<u8>(), Some(&3));
}

#[test]
fn a_value_context_reports_its_ancestors_deadline() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (timed, _h) = Context::background().with_deadline(deadline);
    let valued = timed.with_value(1u32);
    assert_eq!(valued.deadline(), timed.deadline());
    assert!(valued.deadline().is_some());
    assert_eq!(Context::background().with_value(1u32).deadline(), None);
}

#[test]
fn values_outlive_dropped_ancestors_and_their_handles() {
    let shared = Arc::new(RequestId(5));
    let leaf = {
        let (parent, handle) = Context::background().with_cancel();
        let valued = parent.with_value(shared.clone());
        let (leaf, leaf_handle) = valued.with_cancel();
        drop((parent, valued, handle, leaf_handle));
        leaf
    };
    assert!(leaf.is_done());
    assert_eq!(**leaf.value::<Arc<RequestId>>().unwrap(), RequestId(5));
    assert_eq!(Arc::strong_count(&shared), 2);
    drop(leaf);
    assert_eq!(
        Arc::strong_count(&shared),
        1,
        "the value was dropped with the chain"
    );
}

#[test]
fn values_are_shared_across_threads() {
    let ctx = Context::background().with_value(RequestId(77));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let ctx = ctx.clone();
            std::thread::spawn(move || ctx.value::<RequestId>().map(|r| r.0))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Some(77));
    }
}

enum Layer {
    Value,
    Cancel(CancelHandle),
    Timeout(CancelHandle),
}

fn bind(ctx: &Context, key: usize, value: usize) -> Context {
    match key {
        0 => ctx.with_value(Key::<0>(value)),
        1 => ctx.with_value(Key::<1>(value)),
        2 => ctx.with_value(Key::<2>(value)),
        3 => ctx.with_value(Key::<3>(value)),
        4 => ctx.with_value(Key::<4>(value)),
        5 => ctx.with_value(Key::<5>(value)),
        6 => ctx.with_value(Key::<6>(value)),
        _ => ctx.with_value(Key::<7>(value)),
    }
}

fn lookup(ctx: &Context, key: usize) -> Option<usize> {
    match key {
        0 => ctx.value::<Key<0>>().map(|k| k.0),
        1 => ctx.value::<Key<1>>().map(|k| k.0),
        2 => ctx.value::<Key<2>>().map(|k| k.0),
        3 => ctx.value::<Key<3>>().map(|k| k.0),
        4 => ctx.value::<Key<4>>().map(|k| k.0),
        5 => ctx.value::<Key<5>>().map(|k| k.0),
        6 => ctx.value::<Key<6>>().map(|k| k.0),
        _ => ctx.value::<Key<7>>().map(|k| k.0),
    }
}

/// The acceptance test: random stacks of 30-60 mixed value, cancel
/// and timeout layers; canceling any cancel or timeout layer makes the
/// innermost context done before `cancel` returns, and every value still
/// resolves to its nearest binding.
#[test]
fn random_mixed_stacks_cancel_synchronously_and_keep_their_values() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let rounds = if cfg!(miri) { 8 } else { 200 };
    for round in 0..rounds {
        let depth = 30 + rng.below(31);
        let mut ctx = Context::background();
        let mut layers = Vec::new();
        let mut nearest: [Option<usize>; 8] = [None; 8];
        for i in 0..depth {
            match rng.below(3) {
                0 => {
                    let key = rng.below(8);
                    ctx = bind(&ctx, key, i);
                    nearest[key] = Some(i);
                    layers.push(Layer::Value);
                }
                1 => {
                    let (child, handle) = ctx.with_cancel();
                    ctx = child;
                    layers.push(Layer::Cancel(handle));
                }
                _ => {
                    let (child, handle) = ctx.with_timeout(Duration::from_secs(3600));
                    ctx = child;
                    layers.push(Layer::Timeout(handle));
                }
            }
        }
        let cancelable: Vec<usize> = (0..depth)
            .filter(|&i| !matches!(layers[i], Layer::Value))
            .collect();
        assert!(!ctx.is_done());
        if let Some(&victim) = cancelable.get(rng.below(cancelable.len().max(1))) {
            match &layers[victim] {
                Layer::Cancel(h) | Layer::Timeout(h) => {
                    h.cancel_with_cause(Cause::msg(format!("layer {victim}")))
                }
                Layer::Value => unreachable!(),
            }
            assert!(
                ctx.is_done(),
                "round {round}: layer {victim} canceled, leaf not done"
            );
            assert_eq!(ctx.err(), Some(Error::Canceled));
            assert_eq!(
                ctx.cause().unwrap().to_string(),
                format!("layer {victim}"),
                "round {round}"
            );
        }
        for (key, want) in nearest.iter().enumerate() {
            assert_eq!(lookup(&ctx, key), *want, "round {round}, key {key}");
        }
        // Drop in a random order: the chain must still be freed cleanly.
        while !layers.is_empty() {
            let at = rng.below(layers.len());
            drop(layers.swap_remove(at));
        }
        assert!(ctx.is_done());
    }
}

#[test]
fn many_distinct_keys_in_a_long_chain() {
    // 8 key types rebound 1,000 times each: lookups find the nearest binding
    // wherever it lies (chunk walk or table).
    let mut ctx = Context::background();
    let n = if cfg!(miri) { 400 } else { 8_000 };
    for i in 0..n {
        ctx = bind(&ctx, i % 8, i);
        if i % 97 == 0 {
            for key in 0..8 {
                let want = (0..=i).rev().find(|j| j % 8 == key);
                assert_eq!(lookup(&ctx, key), want);
            }
        }
    }
    assert_eq!(ctx.value::<RequestId>(), None);
}

#[test]
fn a_million_deep_value_chain_drops_on_a_small_stack() {
    let depth = if cfg!(miri) { 2_000 } else { 1_000_000 };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let shared = Arc::new(0u8);
            let mut ctx = Context::background().with_value(shared.clone());
            for i in 0..depth {
                ctx = ctx.with_value(i);
            }
            assert_eq!(ctx.value::<usize>(), Some(&(depth - 1)));
            assert_eq!(**ctx.value::<Arc<u8>>().unwrap(), 0);
            drop(ctx);
            assert_eq!(Arc::strong_count(&shared), 1);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn without_cancel_keeps_values_and_drops_cancellation() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (parent, cancel) = Context::background()
        .with_value(RequestId(1))
        .with_deadline(deadline);
    let detached = parent.without_cancel();
    assert_eq!(detached.deadline(), None);
    assert_eq!(detached.err(), None);
    assert_eq!(detached.cause(), None);
    assert_eq!(detached.value::<RequestId>(), Some(&RequestId(1)));
    let (child, child_handle) = detached.with_cancel();
    let valued = detached.with_value(User("eve"));
    cancel.cancel();
    assert!(parent.is_done());
    assert!(!detached.is_done());
    assert!(
        !child.is_done(),
        "children of a detached context are independent"
    );
    assert!(!valued.is_done());
    assert_eq!(valued.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(valued.value::<User>(), Some(&User("eve")));
    assert_eq!(detached.wait_timeout(Duration::from_millis(1)), None);
    // The detached subtree is still cancelable on its own.
    child_handle.cancel();
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(child.value::<RequestId>(), Some(&RequestId(1)));
}

#[test]
fn without_cancel_of_a_canceled_context_is_not_canceled() {
    let (parent, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let detached = parent.with_value(2u16).without_cancel();
    assert!(!detached.is_done());
    let (child, _h) = detached.with_cancel();
    assert!(!child.is_done());
    assert_eq!(child.value::<u16>(), Some(&2));
}

#[test]
fn nested_without_cancel_chains_drop_on_a_small_stack() {
    let depth = if cfg!(miri) { 1_000 } else { 200_000 };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut ctx = Context::background();
            let mut handles = Vec::new();
            for i in 0..depth {
                let (child, h) = ctx.with_value(i).without_cancel().with_cancel();
                handles.push(h);
                ctx = child;
            }
            assert_eq!(ctx.value::<usize>(), Some(&(depth - 1)));
            drop(handles);
            drop(ctx);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn display_interleaves_cancel_and_value_layers_in_derivation_order() {
    let root = Context::background();
    let (a, _ha) = root.with_cancel();
    let b = a.with_value(RequestId(1));
    let (c, _hc) = b.with_cancel();
    let d = c.with_value(User("x")).with_value(3u8);
    assert_eq!(
        d.to_string(),
        format!(
            "context.Background.WithCancel.WithValue({}).WithCancel.WithValue({}).WithValue(u8)",
            std::any::type_name::<RequestId>(),
            std::any::type_name::<User>()
        )
    );
    let v = Context::todo().with_value(1i32);
    assert_eq!(v.to_string(), "context.TODO.WithValue(i32)");
    let (w, _hw) = v.without_cancel().with_cancel();
    assert_eq!(
        w.with_value(2i64).to_string(),
        "context.TODO.WithValue(i32).WithoutCancel.WithCancel.WithValue(i64)"
    );
    assert_eq!(
        Context::background().without_cancel().to_string(),
        "context.Background.WithoutCancel"
    );
}

#[test]
fn same_distinguishes_value_layers() {
    let root = Context::background();
    let a = root.with_value(1u8);
    assert!(a.same(&a.clone()));
    assert!(!a.same(&root));
    assert!(!a.same(&root.with_value(1u8)));
    assert!(!root.without_cancel().same(&root));
}
