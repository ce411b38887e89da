//! Value keys: private types, as Go's unexported key types. All four hold
//! a `u32` (same layout, different keys).

use std::any::type_name;

use ctxtree::Context;

#[derive(Debug)]
struct K0(u32);
#[derive(Debug)]
struct K1(u32);
#[derive(Debug)]
struct K2(u32);
#[derive(Debug)]
struct K3(u32);

pub(super) const KEYS: usize = 4;

pub(super) fn key_name(key: usize) -> &'static str {
    match key {
        0 => type_name::<K0>(),
        1 => type_name::<K1>(),
        2 => type_name::<K2>(),
        _ => type_name::<K3>(),
    }
}

pub(super) fn bind(ctx: &Context, key: usize, v: u32) -> Context {
    match key {
        0 => ctx.with_value(K0(v)),
        1 => ctx.with_value(K1(v)),
        2 => ctx.with_value(K2(v)),
        _ => ctx.with_value(K3(v)),
    }
}

/// What `value::<K0..K3>()` returns on `ctx`.
pub(super) fn lookup(ctx: &Context) -> [Option<u32>; KEYS] {
    [
        ctx.value::<K0>().map(|k| k.0),
        ctx.value::<K1>().map(|k| k.0),
        ctx.value::<K2>().map(|k| k.0),
        ctx.value::<K3>().map(|k| k.0),
    ]
}
