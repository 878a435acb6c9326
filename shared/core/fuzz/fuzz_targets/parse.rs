//! Fuzzes `backup::parse` with the head, tail and object size the pipeline would pass for an
//! object whose bytes are the input (the first byte picks how it is read).

#![no_main]

use bakdrop_core::backup::{parse, ParseError, HEAD_LIMIT, TAIL_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, object)) = data.split_first() else {
        return;
    };
    let total = object.len() as u64;
    let head = &object[..object.len().min(HEAD_LIMIT)];
    let tail = &object[object.len().saturating_sub(TAIL_LIMIT)..];
    let outcome = match mode % 4 {
        // Head and tail of the whole object.
        0 => parse(head, Some(tail), total),
        // Head only.
        1 => parse(head, None, total),
        // The input is only the head of a larger object.
        2 => parse(head, None, total.saturating_mul(3).saturating_add(4096)),
        // The input's end is the tail of a larger object whose head is the input's start.
        _ => parse(head, Some(tail), total.saturating_add(1 << 30)),
    };
    if let Err(e) = outcome {
        assert!(!e.to_string().is_empty());
        if let ParseError::NeedMoreHead { needed } = e {
            assert!(needed > head.len() && needed <= HEAD_LIMIT);
            assert!((needed as u64) <= total.saturating_mul(3).saturating_add(1 << 30) + 4096);
        }
    }
});
