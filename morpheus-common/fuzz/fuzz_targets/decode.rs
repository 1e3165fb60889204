// SPDX-License-Identifier: GPL-2.0-only
//! libFuzzer target: the loader's message parser on arbitrary bytes.
//! Run: `./morpheus-dev fuzz [SECONDS]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use morpheus_common::protocol::{MAX_MESSAGE_SIZE, Message};

fuzz_target!(|data: &[u8]| {
    // Never panics; whatever it accepts is a well-formed message that
    // survives a round trip through the encoder.
    if let Ok(msg) = Message::decode(data) {
        assert!(data.len() <= MAX_MESSAGE_SIZE);
        let bytes = msg.encode();
        assert_eq!(bytes.len(), data.len());
        assert_eq!(Message::decode(&bytes), Ok(msg));
    }
});
