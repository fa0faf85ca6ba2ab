//! Harness for the zmesh envelope codec: `envelope_decode`.

use bytes::Bytes;
use zmesh_core::envelope::{is_envelope, Envelope};
use zmesh_core::reqrep::wire::ErrorBody;

/// `envelope_decode`: the input is one WHISPER content frame. Checked besides "no panic":
///
/// * whatever decodes claims to be an envelope ([`is_envelope`]) and re-encodes to exactly the
///   input (one encoding per envelope, no field lost, the payload a slice of the frame);
/// * the request/reply ERROR body ([`ErrorBody`]) of its payload, if it decodes, re-encodes to
///   exactly the payload.
pub fn envelope_decode(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let Ok(env) = Envelope::decode(&frame) else {
        return;
    };
    assert!(is_envelope(data), "decoded a frame without the magic");
    assert_eq!(
        env.encoded_len(),
        data.len(),
        "encoded_len disagrees: {env:?}"
    );
    let again = env.encode().expect("a decoded envelope encodes");
    assert_eq!(&again[..], data, "re-encoding differs: {env:?}");
    assert_eq!(Envelope::decode(&again).as_ref(), Ok(&env));
    if let Ok(body) = ErrorBody::decode(&env.payload) {
        assert_eq!(
            &body.encode()[..],
            &env.payload[..],
            "error body re-encodes differently"
        );
    }
}
