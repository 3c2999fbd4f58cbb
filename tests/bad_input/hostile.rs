//! Hostile messages of any type in the services' descriptor set, written
//! field by field in the protobuf wire format, and seeded random bytes.

use std::collections::HashMap;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// How a corpus message is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutation {
    /// Every field at its default.
    Empty,
    /// Strings that are not UTF-8.
    NotUtf8,
    /// 64 KiB strings and bytes, the largest numbers.
    Huge,
    /// -1 and the smallest numbers; negative enum values.
    Negative,
    /// Enum values no version of the protos defines.
    UnknownEnums,
    /// Maps and lists of 20,000 entries.
    HugeCollections,
    /// Path traversal, NUL, control and bidirectional characters, option-like
    /// text.
    Hostile,
    /// One field of 5 MiB: past the server's message limit.
    Oversized,
}

pub(crate) const MUTATIONS: [Mutation; 8] = [
    Mutation::Empty,
    Mutation::NotUtf8,
    Mutation::Huge,
    Mutation::Negative,
    Mutation::UnknownEnums,
    Mutation::HugeCollections,
    Mutation::Hostile,
    Mutation::Oversized,
];

pub(crate) const HOSTILE: [&str; 6] = [
    "../../../../etc/passwd",
    "a\0b",
    "\u{202e}txt.exe\r\n\x1b[2J",
    "--help",
    "/proc/self/root/../../",
    " ",
];

/// Writes messages of any type in the descriptor set, field by field, in the
/// protobuf wire format.
pub(crate) struct Corpus {
    messages: HashMap<String, DescriptorProto>,
    /// The sandbox id to put in `sandbox_id` fields, if any.
    pub(crate) sandbox_id: Option<String>,
    /// Whether the one oversized field was written already.
    pub(crate) oversized_done: bool,
}

impl Corpus {
    pub(crate) fn new(set: &FileDescriptorSet) -> Self {
        let mut messages = HashMap::new();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                collect(&mut messages, &format!(".{package}"), message);
            }
        }
        Self {
            messages,
            sandbox_id: None,
            oversized_done: false,
        }
    }

    pub(crate) fn message(&mut self, type_name: &str, mutation: Mutation, depth: usize) -> Vec<u8> {
        let Some(descriptor) = self.messages.get(type_name).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for field in &descriptor.field {
            let count = match (field.label(), mutation) {
                (Label::Repeated, Mutation::HugeCollections) if depth <= 1 => 20_000,
                (Label::Repeated, _) => 2,
                _ => 1,
            };
            for index in 0..count {
                self.field(&mut out, field, mutation, depth, index);
            }
        }
        out
    }

    pub(crate) fn field(
        &mut self,
        out: &mut Vec<u8>,
        field: &FieldDescriptorProto,
        mutation: Mutation,
        depth: usize,
        index: usize,
    ) {
        let number = field.number() as u64;
        let varint = |out: &mut Vec<u8>, value: u64| {
            put_varint(out, number << 3);
            put_varint(out, value);
        };
        let delimited = |out: &mut Vec<u8>, bytes: &[u8]| {
            put_varint(out, (number << 3) | 2);
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        };
        match field.r#type() {
            Type::String | Type::Bytes => {
                if mutation == Mutation::Empty {
                    return;
                }
                if field.name() == "sandbox_id"
                    && let Some(id) = &self.sandbox_id
                    && mutation != Mutation::NotUtf8
                {
                    delimited(out, id.as_bytes());
                    return;
                }
                let value: Vec<u8> = match mutation {
                    Mutation::Oversized if !self.oversized_done => {
                        self.oversized_done = true;
                        vec![b'a'; 5 << 20]
                    }
                    Mutation::NotUtf8 => vec![0xff, 0xfe, b'A', 0xc3, 0x28],
                    Mutation::Huge => vec![b'a'; 64 << 10],
                    // Distinct keys, so maps really hold every entry.
                    Mutation::HugeCollections => format!("k{index}").into_bytes(),
                    Mutation::Hostile => HOSTILE[index % HOSTILE.len()].as_bytes().to_vec(),
                    _ => b"x".to_vec(),
                };
                delimited(out, &value);
            }
            Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 => {
                let value = match mutation {
                    Mutation::Negative => [u64::MAX, i64::MIN as u64][index % 2],
                    Mutation::Huge => [i64::MAX as u64, u64::MAX >> 1, u32::MAX as u64][index % 3],
                    Mutation::Empty => return,
                    _ => 1,
                };
                varint(out, value);
            }
            Type::Sint32 | Type::Sint64 => {
                varint(out, if mutation == Mutation::Negative { 1 } else { 2 });
            }
            Type::Enum => {
                let value = match mutation {
                    Mutation::UnknownEnums => 999,
                    Mutation::Negative => u64::MAX,
                    Mutation::Empty => return,
                    _ => 1,
                };
                varint(out, value);
            }
            Type::Bool => varint(out, 1),
            Type::Double | Type::Fixed64 | Type::Sfixed64 => {
                put_varint(out, (number << 3) | 1);
                let value = match mutation {
                    Mutation::Negative => (-1e300f64).to_bits(),
                    Mutation::Huge => f64::NAN.to_bits(),
                    _ => 1f64.to_bits(),
                };
                out.extend_from_slice(&value.to_le_bytes());
            }
            Type::Float | Type::Fixed32 | Type::Sfixed32 => {
                put_varint(out, (number << 3) | 5);
                out.extend_from_slice(&f32::INFINITY.to_bits().to_le_bytes());
            }
            Type::Message => {
                if depth >= 3 {
                    return;
                }
                let nested = self.message(field.type_name(), mutation, depth + 1);
                delimited(out, &nested);
            }
            Type::Group => {}
        }
    }
}

pub(crate) fn collect(
    messages: &mut HashMap<String, DescriptorProto>,
    scope: &str,
    message: &DescriptorProto,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in &message.nested_type {
        collect(messages, &name, nested);
    }
    messages.insert(name, message.clone());
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Seeded random bytes (xorshift), the same on every run.
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}
