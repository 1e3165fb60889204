// SPDX-License-Identifier: GPL-2.0-only
//! The registration protocol: messages exchanged over the loader's
//! `SOCK_SEQPACKET` Unix socket (one message per packet).
//!
//! The wire format is the header's `struct morpheus_msg_*` in native byte
//! order (both ends are on one machine). [`Message::decode`] validates magic,
//! version, type, length and every enum value before anything acts on it:
//! the loader treats every byte from a client as hostile.
//!
//! Identities never come from a message: the loader takes the process from
//! `SO_PEERCRED` and the thread from a pidfd passed with `SCM_RIGHTS`.

use core::mem::size_of;

use crate::abi::{self, morpheus_msg_hdr as Hdr};
use crate::{ABI_MAGIC, ABI_VERSION, RuntimeKind, Status, UnknownValue, WORKER_ESCAPABLE};

/// Largest packet either side sends or accepts.
pub const MAX_MESSAGE_SIZE: usize = abi::MORPHEUS_MSG_MAX_SIZE as usize;

/// Flags a client may set in a register request.
pub const KNOWN_WORKER_FLAGS: u32 = WORKER_ESCAPABLE;

/// One protocol message, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Client -> loader: open a session for this process.
    Hello {
        /// The runtime the process uses.
        runtime_kind: RuntimeKind,
    },
    /// Loader -> client: session opened (the SCB array fd travels with it).
    HelloReply {
        /// Result of the request.
        status: Status,
        /// Slots in the SCB array.
        max_workers: u32,
        /// Size of one SCB, for a sanity check by the client.
        scb_size: u32,
        /// `MORPHEUS_SCBK_*` flags that apply to every worker.
        flags: u32,
        /// The scheduler's grace period in nanoseconds.
        grace_ns: u64,
    },
    /// Client -> loader: register the thread whose pidfd travels with it.
    Register {
        /// `MORPHEUS_WORKER_*` flags.
        flags: u32,
        /// The runtime the thread belongs to.
        runtime_kind: RuntimeKind,
    },
    /// Loader -> client: the slot assigned to the thread.
    RegisterReply {
        /// Result of the request.
        status: Status,
        /// Index into the SCB array.
        slot: u32,
        /// Generation of the slot at assignment.
        generation: u64,
    },
    /// Client -> loader: release a slot of this process.
    Unregister {
        /// Index into the SCB array.
        slot: u32,
        /// Generation received at registration.
        generation: u64,
    },
    /// Loader -> client: result of an unregister request.
    UnregisterReply {
        /// Result of the request.
        status: Status,
    },
    /// Loader -> client: the previous message could not be accepted.
    Error {
        /// Why.
        status: Status,
    },
}

/// Why a packet is not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Shorter than its header or than its type requires.
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Longer than [`MAX_MESSAGE_SIZE`].
    TooLong {
        /// Bytes received.
        len: usize,
    },
    /// The first word is not `MORPHEUS_ABI_MAGIC`: not a Morpheus peer.
    BadMagic {
        /// The word received.
        magic: u32,
    },
    /// The peer speaks another ABI version.
    BadVersion {
        /// The version the peer announced.
        version: u16,
    },
    /// Unknown message type.
    UnknownType {
        /// The type received.
        msg_type: u16,
    },
    /// The header's length field disagrees with the packet or the type.
    BadLength {
        /// Length in the header.
        declared: u32,
        /// Bytes received.
        actual: usize,
    },
    /// A field holds a value outside its enum.
    BadValue(UnknownValue),
    /// Unknown bits in a flags field.
    UnknownFlags {
        /// The flags received.
        flags: u32,
    },
    /// More file descriptors than the protocol allows (one per message).
    TooManyFds {
        /// Descriptors received.
        count: usize,
    },
}

impl ProtocolError {
    /// The status the loader answers this error with.
    pub fn status(&self) -> Status {
        match self {
            ProtocolError::BadVersion { .. } => Status::BadVersion,
            _ => Status::BadMessage,
        }
    }
}

impl core::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ProtocolError::Truncated { len, need } => {
                write!(f, "truncated message: {len} bytes, need {need}")
            }
            ProtocolError::TooLong { len } => {
                write!(
                    f,
                    "message of {len} bytes exceeds the {MAX_MESSAGE_SIZE}-byte limit"
                )
            }
            ProtocolError::BadMagic { magic } => {
                write!(
                    f,
                    "bad magic {magic:#010x}: the peer is not a Morpheus endpoint"
                )
            }
            ProtocolError::BadVersion { version } => write!(
                f,
                "the peer speaks Morpheus ABI v{version}, this side v{ABI_VERSION}: \
                 upgrade the runtime and scx_morpheus together"
            ),
            ProtocolError::UnknownType { msg_type } => write!(f, "unknown message type {msg_type}"),
            ProtocolError::BadLength { declared, actual } => {
                write!(f, "length field says {declared} bytes, packet has {actual}")
            }
            ProtocolError::BadValue(e) => write!(f, "invalid field: {e}"),
            ProtocolError::UnknownFlags { flags } => write!(f, "unknown flag bits {flags:#x}"),
            ProtocolError::TooManyFds { count } => {
                write!(
                    f,
                    "{count} file descriptors attached; at most one is allowed"
                )
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<UnknownValue> for ProtocolError {
    fn from(e: UnknownValue) -> Self {
        ProtocolError::BadValue(e)
    }
}

/// Plain-old-data wire structs: integers only, no implicit padding, so every
/// byte pattern is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs made of integers and arrays of
/// integers, without implicit padding.
unsafe trait Wire: Copy + Default {}
unsafe impl Wire for abi::morpheus_msg_hello {}
unsafe impl Wire for abi::morpheus_msg_hello_reply {}
unsafe impl Wire for abi::morpheus_msg_register {}
unsafe impl Wire for abi::morpheus_msg_register_reply {}
unsafe impl Wire for abi::morpheus_msg_unregister {}
unsafe impl Wire for abi::morpheus_msg_status {}
unsafe impl Wire for Hdr {}

fn bytes_of<T: Wire>(v: &T) -> &[u8] {
    // SAFETY: T is Wire: fully initialised integers without padding.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

fn read<T: Wire>(buf: &[u8]) -> Result<T, ProtocolError> {
    if buf.len() < size_of::<T>() {
        return Err(ProtocolError::Truncated {
            len: buf.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: the length is checked above, and any bytes form a valid T.
    Ok(unsafe { core::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

fn header(msg_type: u32, len: usize) -> Hdr {
    Hdr {
        magic: ABI_MAGIC,
        abi_version: ABI_VERSION as u16,
        type_: msg_type as u16,
        len: len as u32,
        __pad: 0,
    }
}

fn check_flags(flags: u32) -> Result<u32, ProtocolError> {
    if flags & !KNOWN_WORKER_FLAGS != 0 {
        return Err(ProtocolError::UnknownFlags { flags });
    }
    Ok(flags)
}

impl Message {
    /// The `enum morpheus_msg_type` value of this message.
    pub fn msg_type(&self) -> u32 {
        match self {
            Message::Hello { .. } => abi::MORPHEUS_MSG_HELLO,
            Message::HelloReply { .. } => abi::MORPHEUS_MSG_HELLO_REPLY,
            Message::Register { .. } => abi::MORPHEUS_MSG_REGISTER,
            Message::RegisterReply { .. } => abi::MORPHEUS_MSG_REGISTER_REPLY,
            Message::Unregister { .. } => abi::MORPHEUS_MSG_UNREGISTER,
            Message::UnregisterReply { .. } => abi::MORPHEUS_MSG_UNREGISTER_REPLY,
            Message::Error { .. } => abi::MORPHEUS_MSG_ERROR,
        }
    }

    /// The wire bytes of this message (one packet).
    pub fn encode(&self) -> Vec<u8> {
        fn pack<T: Wire>(msg_type: u32, fill: impl FnOnce(&mut T)) -> Vec<u8> {
            let mut v = T::default();
            fill(&mut v);
            let mut out = bytes_of(&v).to_vec();
            out[..size_of::<Hdr>()].copy_from_slice(bytes_of(&header(msg_type, size_of::<T>())));
            out
        }
        let t = self.msg_type();
        match *self {
            Message::Hello { runtime_kind } => pack(t, |m: &mut abi::morpheus_msg_hello| {
                m.runtime_kind = runtime_kind.as_u32()
            }),
            Message::HelloReply {
                status,
                max_workers,
                scb_size,
                flags,
                grace_ns,
            } => pack(t, |m: &mut abi::morpheus_msg_hello_reply| {
                m.status = status.as_u32();
                m.max_workers = max_workers;
                m.scb_size = scb_size;
                m.flags = flags;
                m.grace_ns = grace_ns;
            }),
            Message::Register {
                flags,
                runtime_kind,
            } => pack(t, |m: &mut abi::morpheus_msg_register| {
                m.flags = flags;
                m.runtime_kind = runtime_kind.as_u32();
            }),
            Message::RegisterReply {
                status,
                slot,
                generation,
            } => pack(t, |m: &mut abi::morpheus_msg_register_reply| {
                m.status = status.as_u32();
                m.slot = slot;
                m.generation = generation;
            }),
            Message::Unregister { slot, generation } => {
                pack(t, |m: &mut abi::morpheus_msg_unregister| {
                    m.slot = slot;
                    m.generation = generation;
                })
            }
            Message::UnregisterReply { status } | Message::Error { status } => {
                pack(t, |m: &mut abi::morpheus_msg_status| {
                    m.status = status.as_u32()
                })
            }
        }
    }

    /// Parses and validates one packet.
    pub fn decode(buf: &[u8]) -> Result<Message, ProtocolError> {
        if buf.len() > MAX_MESSAGE_SIZE {
            return Err(ProtocolError::TooLong { len: buf.len() });
        }
        let hdr: Hdr = read(buf)?;
        if hdr.magic != ABI_MAGIC {
            return Err(ProtocolError::BadMagic { magic: hdr.magic });
        }
        if u32::from(hdr.abi_version) != ABI_VERSION {
            return Err(ProtocolError::BadVersion {
                version: hdr.abi_version,
            });
        }
        let expected = match u32::from(hdr.type_) {
            abi::MORPHEUS_MSG_HELLO => size_of::<abi::morpheus_msg_hello>(),
            abi::MORPHEUS_MSG_HELLO_REPLY => size_of::<abi::morpheus_msg_hello_reply>(),
            abi::MORPHEUS_MSG_REGISTER => size_of::<abi::morpheus_msg_register>(),
            abi::MORPHEUS_MSG_REGISTER_REPLY => size_of::<abi::morpheus_msg_register_reply>(),
            abi::MORPHEUS_MSG_UNREGISTER => size_of::<abi::morpheus_msg_unregister>(),
            abi::MORPHEUS_MSG_UNREGISTER_REPLY | abi::MORPHEUS_MSG_ERROR => {
                size_of::<abi::morpheus_msg_status>()
            }
            _ => {
                return Err(ProtocolError::UnknownType {
                    msg_type: hdr.type_,
                });
            }
        };
        if hdr.len as usize != buf.len() || buf.len() != expected {
            return Err(ProtocolError::BadLength {
                declared: hdr.len,
                actual: buf.len(),
            });
        }
        Ok(match u32::from(hdr.type_) {
            abi::MORPHEUS_MSG_HELLO => {
                let m: abi::morpheus_msg_hello = read(buf)?;
                Message::Hello {
                    runtime_kind: RuntimeKind::try_from(m.runtime_kind)?,
                }
            }
            abi::MORPHEUS_MSG_HELLO_REPLY => {
                let m: abi::morpheus_msg_hello_reply = read(buf)?;
                Message::HelloReply {
                    status: Status::try_from(m.status)?,
                    max_workers: m.max_workers,
                    scb_size: m.scb_size,
                    flags: m.flags,
                    grace_ns: m.grace_ns,
                }
            }
            abi::MORPHEUS_MSG_REGISTER => {
                let m: abi::morpheus_msg_register = read(buf)?;
                Message::Register {
                    flags: check_flags(m.flags)?,
                    runtime_kind: RuntimeKind::try_from(m.runtime_kind)?,
                }
            }
            abi::MORPHEUS_MSG_REGISTER_REPLY => {
                let m: abi::morpheus_msg_register_reply = read(buf)?;
                Message::RegisterReply {
                    status: Status::try_from(m.status)?,
                    slot: m.slot,
                    generation: m.generation,
                }
            }
            abi::MORPHEUS_MSG_UNREGISTER => {
                let m: abi::morpheus_msg_unregister = read(buf)?;
                Message::Unregister {
                    slot: m.slot,
                    generation: m.generation,
                }
            }
            abi::MORPHEUS_MSG_UNREGISTER_REPLY => {
                let m: abi::morpheus_msg_status = read(buf)?;
                Message::UnregisterReply {
                    status: Status::try_from(m.status)?,
                }
            }
            _ => {
                let m: abi::morpheus_msg_status = read(buf)?;
                Message::Error {
                    status: Status::try_from(m.status)?,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                runtime_kind: RuntimeKind::Tokio,
            },
            Message::HelloReply {
                status: Status::Ok,
                max_workers: 256,
                scb_size: 128,
                flags: 1,
                grace_ns: 100_000_000,
            },
            Message::Register {
                flags: WORKER_ESCAPABLE,
                runtime_kind: RuntimeKind::Asyncio,
            },
            Message::RegisterReply {
                status: Status::TableFull,
                slot: 7,
                generation: 3,
            },
            Message::Unregister {
                slot: 7,
                generation: 3,
            },
            Message::UnregisterReply {
                status: Status::NotFound,
            },
            Message::Error {
                status: Status::BadVersion,
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in samples() {
            let bytes = m.encode();
            assert!(bytes.len() <= MAX_MESSAGE_SIZE);
            assert_eq!(Message::decode(&bytes), Ok(m), "{m:?}");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        for m in samples() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Message::decode(&bytes[..cut]).is_err(),
                    "{m:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn hostile_headers_are_rejected_with_the_right_error() {
        let good = Message::Hello {
            runtime_kind: RuntimeKind::Tokio,
        }
        .encode();

        let mut b = good.clone();
        b[0] ^= 0xff;
        assert!(matches!(
            Message::decode(&b),
            Err(ProtocolError::BadMagic { .. })
        ));

        let mut b = good.clone();
        b[4] = 9; // abi_version
        let err = Message::decode(&b).unwrap_err();
        assert_eq!(err, ProtocolError::BadVersion { version: 9 });
        assert_eq!(err.status(), Status::BadVersion);
        assert!(err.to_string().contains("upgrade"));

        let mut b = good.clone();
        b[6] = 200; // type
        assert_eq!(
            Message::decode(&b),
            Err(ProtocolError::UnknownType { msg_type: 200 })
        );

        let mut b = good.clone();
        b[8] = 200; // len
        assert!(matches!(
            Message::decode(&b),
            Err(ProtocolError::BadLength { .. })
        ));

        let mut b = good.clone();
        b.extend_from_slice(&[0; 8]);
        assert!(matches!(
            Message::decode(&b),
            Err(ProtocolError::BadLength { .. })
        ));

        assert!(matches!(
            Message::decode(&[0u8; MAX_MESSAGE_SIZE + 1]),
            Err(ProtocolError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_enum_values_and_flags_are_rejected() {
        let mut b = Message::Register {
            flags: 0,
            runtime_kind: RuntimeKind::Tokio,
        }
        .encode();
        b[16..20].copy_from_slice(&0x80u32.to_ne_bytes());
        assert_eq!(
            Message::decode(&b),
            Err(ProtocolError::UnknownFlags { flags: 0x80 })
        );

        let mut b = Message::Register {
            flags: 0,
            runtime_kind: RuntimeKind::Tokio,
        }
        .encode();
        b[20..24].copy_from_slice(&77u32.to_ne_bytes());
        assert!(matches!(
            Message::decode(&b),
            Err(ProtocolError::BadValue(_))
        ));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // A small deterministic fuzz: xorshift bytes, every length.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..=MAX_MESSAGE_SIZE + 4 {
            for _ in 0..200 {
                let mut buf = vec![0u8; len];
                for byte in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *byte = x as u8;
                }
                if len >= 16 {
                    buf[..4].copy_from_slice(&ABI_MAGIC.to_ne_bytes());
                    buf[4..6].copy_from_slice(&(ABI_VERSION as u16).to_ne_bytes());
                    buf[6] %= 9;
                    buf[7] = 0;
                }
                let _ = Message::decode(&buf);
            }
        }
    }
}
