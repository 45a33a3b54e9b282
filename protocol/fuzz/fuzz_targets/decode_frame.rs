//! Fuzz target: arbitrary bytes from a peer go through the framer and the message decoders,
//! exactly as the server reads them. Must never panic, hang or over-allocate.
#![no_main]

use bytes::BytesMut;
use ft_protocol::{
    codec::{decode, decode_hello, FrameCodec},
    Request, Response,
};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new();
    let mut buffer = BytesMut::from(data);
    let mut first = true;
    while let Ok(Some(frame)) = codec.decode(&mut buffer) {
        if first {
            let _ = decode_hello(&frame);
            first = false;
        }
        let _ = decode::<Request>(&frame);
        let _ = decode::<Response>(&frame);
    }
});
