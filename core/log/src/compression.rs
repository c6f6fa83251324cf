//! The codecs Kafka record batches use: gzip, Snappy, LZ4 and Zstandard.
//!
//! The log stores compressed batches as they came; these functions exist for the places that must
//! look inside one: validating records on append, compaction (which reads keys and rewrites
//! batches with the same codec), timestamp look-ups and consumers. Decompression is bounded: a
//! batch that inflates past [`MAX_DECOMPRESSED_BYTES`] is an error, not an allocation.
//!
//! Formats, as Kafka clients write them: gzip is an RFC 1952 stream; Snappy is either raw Snappy
//! or the "xerial" framing of the Java client (magic `\x82SNAPPY\0`, version, compatible version,
//! then blocks each prefixed by a big-endian u32 length), both are read and xerial is written;
//! LZ4 is the LZ4 frame format; Zstandard is a zstd frame.

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// The bits of a batch's attributes that name its codec.
pub(crate) const COMPRESSION_MASK: i16 = 0x07;

/// The compression codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records are stored as they are.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    pub(crate) fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    pub(crate) fn from_attributes(attributes: i16) -> Result<Self> {
        Ok(match attributes & COMPRESSION_MASK {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(Error::InvalidBatch(format!("unknown compression codec {other} in attributes"))),
        })
    }
}

/// The largest records section a compressed batch may inflate to.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

fn bad(codec: Compression, detail: impl std::fmt::Display) -> Error {
    Error::Decode(format!("cannot decompress {codec:?} records: {detail}"))
}

fn read_bounded(codec: Compression, mut reader: impl Read, size_hint: usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size_hint.min(MAX_DECOMPRESSED_BYTES));
    let n = (&mut reader).take(MAX_DECOMPRESSED_BYTES as u64 + 1).read_to_end(&mut out).map_err(|e| bad(codec, e))?;
    if n > MAX_DECOMPRESSED_BYTES {
        return Err(bad(codec, format!("records inflate past {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    Ok(out)
}

fn snappy_raw(input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = snap::raw::decompress_len(input).map_err(|e| bad(Compression::Snappy, e))?;
    if out.len() + len > MAX_DECOMPRESSED_BYTES {
        return Err(bad(Compression::Snappy, format!("records inflate past {MAX_DECOMPRESSED_BYTES} bytes")));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new().decompress(input, &mut out[start..]).map_err(|e| bad(Compression::Snappy, e))?;
    Ok(())
}

/// Decompresses a records section.
pub fn decompress(codec: Compression, input: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), input.len() * 4),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), input.len() * 4),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(input).map_err(|e| bad(codec, e))?;
            read_bounded(codec, decoder, input.len() * 4)
        }
        Compression::Snappy => {
            let mut out = Vec::new();
            if input.len() >= XERIAL_HEADER_BYTES && &input[..8] == XERIAL_MAGIC {
                let mut rest = &input[XERIAL_HEADER_BYTES..];
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(bad(codec, "truncated xerial block length"));
                    }
                    let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                    if rest.len() < 4 + len {
                        return Err(bad(codec, "xerial block runs past the end"));
                    }
                    snappy_raw(&rest[4..4 + len], &mut out)?;
                    rest = &rest[4 + len..];
                }
            } else {
                snappy_raw(input, &mut out)?;
            }
            Ok(out)
        }
    }
}

/// Compresses a records section the way Kafka's clients do for `codec`.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::Internal(format!("{codec:?} compression failed: {e}"));
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(input).map_err(io)?;
            encoder.finish().map_err(io)
        }
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(input).map_err(io)?;
            encoder.finish().map_err(|e| Error::Internal(format!("LZ4 compression failed: {e}")))
        }
        Compression::Zstd => zstd::bulk::compress(input, 3).map_err(io),
        Compression::Snappy => {
            let mut out = Vec::with_capacity(input.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(|e| Error::Internal(format!("Snappy: {e}")))?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_refuses_garbage() {
        let input: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let compressed = compress(codec, &input).unwrap();
            assert!(compressed.len() < input.len(), "{codec:?} did not compress");
            assert_eq!(decompress(codec, &compressed).unwrap(), input, "{codec:?}");
            let garbage = vec![0x5au8; 64];
            assert!(decompress(codec, &garbage).is_err(), "{codec:?} accepted garbage");
        }
        // Raw Snappy, as librdkafka writes it, is read too.
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw).unwrap(), input);
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES + 1];
        let compressed = compress(Compression::Zstd, &zeros).unwrap();
        let e = decompress(Compression::Zstd, &compressed).unwrap_err();
        assert!(e.to_string().contains("inflate past"), "{e}");
    }
}
