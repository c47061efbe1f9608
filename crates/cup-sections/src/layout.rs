//! Section-header walk of a wasm binary.
//!
//! Both core modules and components are a preamble (`\0asm` + version/layer) followed by
//! sections of the form `id:u8 size:u32(LEB128) payload`. Custom sections (id 0) start their
//! payload with a name. This walk reads only those headers (and custom-section names) and
//! seeks over every payload, so its cost grows with the number of sections, not with the size
//! of the code. Nested modules of a component are one top-level section each and are skipped
//! whole: only top-level sections belong to the package.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;

use wasmparser::BinaryReader;

use crate::limits::{MAX_SECTION_NAME, MAX_SECTIONS};
use crate::{CUP_PREFIX, Error, Result};

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: u32 = 0x0000_0001;
const COMPONENT_VERSION: u32 = 0x0001_000d;
/// Bytes of `\0asm` + the version/layer word.
pub const PREAMBLE_LEN: u64 = 8;

/// What kind of wasm binary this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// A core WebAssembly module (version 1).
    Module,
    /// A component (component-model layer 1).
    Component,
}

/// One top-level section as found in the file. Offsets are absolute byte positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    /// Section id (0 = custom).
    pub id: u8,
    /// Position of the id byte: the section spans `offset..end()`.
    pub offset: u64,
    /// Position of the first payload byte (after id and size).
    pub payload_offset: u64,
    /// Payload size as declared by the section header.
    pub payload_len: u64,
    /// For custom sections: the name, and where the data after the name starts.
    pub custom: Option<CustomName>,
}

/// Name of a custom section and where its data begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomName {
    /// The section name; `None` when longer than [`MAX_SECTION_NAME`] (never a `cup.*` name).
    pub name: Option<String>,
    /// Position of the first data byte after the name.
    pub data_offset: u64,
}

impl SectionHeader {
    /// One past the last byte of this section.
    pub fn end(&self) -> u64 {
        self.payload_offset + self.payload_len
    }

    /// The custom-section name, if this is a custom section with a readable name.
    pub fn custom_name(&self) -> Option<&str> {
        self.custom.as_ref().and_then(|c| c.name.as_deref())
    }

    /// Whether this section is owned by cup (`cup.*`).
    pub fn is_cup(&self) -> bool {
        self.custom_name()
            .is_some_and(|n| n.starts_with(CUP_PREFIX))
    }

    /// Byte range of a custom section's data (after its name); the payload for others.
    pub fn data_range(&self) -> Range<u64> {
        let start = self
            .custom
            .as_ref()
            .map_or(self.payload_offset, |c| c.data_offset);
        start..self.end()
    }
}

/// The section map of one wasm binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Whether the binary is a core module or a component.
    pub encoding: Encoding,
    /// Total file size in bytes.
    pub len: u64,
    /// Every top-level section, in file order.
    pub sections: Vec<SectionHeader>,
}

impl Layout {
    /// Walks the headers of a binary held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Layout> {
        scan(&mut SliceSource(bytes))
    }

    /// Walks the headers of a seekable file, reading only headers and custom-section names.
    pub fn from_reader<R: Read + Seek>(reader: &mut R) -> Result<Layout> {
        let len = reader.seek(SeekFrom::End(0))?;
        scan(&mut SeekSource { reader, len })
    }

    /// All `cup.*` sections, in file order.
    pub fn cup_sections(&self) -> impl Iterator<Item = &SectionHeader> {
        self.sections.iter().filter(|s| s.is_cup())
    }

    /// Byte ranges of the binary with every `cup.*` section removed (preamble included),
    /// adjacent ranges merged. Concatenated, they are "the module" whose digest the
    /// manifest records.
    pub fn kept_ranges(&self) -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = Vec::with_capacity(self.sections.len() + 1);
        ranges.push(0..PREAMBLE_LEN);
        for section in self.sections.iter().filter(|s| !s.is_cup()) {
            match ranges.last_mut() {
                Some(last) if last.end == section.offset => last.end = section.end(),
                _ => ranges.push(section.offset..section.end()),
            }
        }
        ranges
    }
}

/// Random access to the bytes being scanned.
pub(crate) trait ByteSource {
    fn len(&self) -> u64;
    /// Reads exactly `buf.len()` bytes at `offset` (callers stay within `len()`).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

pub(crate) struct SliceSource<'a>(pub &'a [u8]);

impl ByteSource for SliceSource<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

pub(crate) struct SeekSource<'a, R> {
    pub reader: &'a mut R,
    pub len: u64,
}

impl<R: Read + Seek> ByteSource for SeekSource<'_, R> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.reader.seek(SeekFrom::Start(offset))?;
        self.reader.read_exact(buf)
    }
}

fn scan(source: &mut dyn ByteSource) -> Result<Layout> {
    let len = source.len();
    if len < PREAMBLE_LEN {
        return Err(if len >= 4 && !starts_with_magic(source)? {
            Error::NotWasm
        } else {
            Error::Truncated(format!("{len} bytes, shorter than the 8-byte header"))
        });
    }
    let mut preamble = [0u8; PREAMBLE_LEN as usize];
    source.read_at(0, &mut preamble)?;
    if &preamble[..4] != MAGIC {
        return Err(Error::NotWasm);
    }
    let version = u32::from_le_bytes([preamble[4], preamble[5], preamble[6], preamble[7]]);
    let encoding = match version {
        CORE_VERSION => Encoding::Module,
        COMPONENT_VERSION => Encoding::Component,
        other => return Err(Error::UnsupportedVersion(other)),
    };

    let mut sections = Vec::new();
    let mut offset = PREAMBLE_LEN;
    while offset < len {
        if sections.len() == MAX_SECTIONS {
            return Err(Error::TooManySections {
                limit: MAX_SECTIONS,
            });
        }
        let section = read_header(source, offset, sections.len())?;
        offset = section.end();
        sections.push(section);
    }
    Ok(Layout {
        encoding,
        len,
        sections,
    })
}

fn starts_with_magic(source: &mut dyn ByteSource) -> Result<bool> {
    let mut magic = [0u8; 4];
    source.read_at(0, &mut magic)?;
    Ok(&magic == MAGIC)
}

fn read_header(source: &mut dyn ByteSource, offset: u64, index: usize) -> Result<SectionHeader> {
    let len = source.len();
    // id (1 byte) + size (at most 5 LEB128 bytes)
    let mut head = [0u8; 6];
    let avail = usize::try_from((len - offset).min(6)).unwrap_or(6);
    source.read_at(offset, &mut head[..avail])?;
    let id = head[0];
    let mut reader = BinaryReader::new(&head[1..avail], 0);
    let payload_len = u64::from(reader.read_var_u32().map_err(|_| {
        if avail < 6 {
            Error::Truncated(format!(
                "section #{index} at byte {offset} has an incomplete size"
            ))
        } else {
            Error::Malformed {
                offset,
                reason: format!("section #{index} has an invalid size"),
            }
        }
    })?);
    let payload_offset = offset + 1 + reader.original_position() as u64;
    if payload_offset + payload_len > len {
        return Err(Error::Truncated(format!(
            "section #{index} (id {id}) at byte {offset} declares {payload_len} bytes but only {} remain",
            len - payload_offset
        )));
    }
    let custom = if id == 0 {
        Some(read_custom_name(source, payload_offset, payload_len)?)
    } else {
        None
    };
    Ok(SectionHeader {
        id,
        offset,
        payload_offset,
        payload_len,
        custom,
    })
}

fn read_custom_name(
    source: &mut dyn ByteSource,
    payload_offset: u64,
    payload_len: u64,
) -> Result<CustomName> {
    let malformed = |reason: String| Error::Malformed {
        offset: payload_offset,
        reason,
    };
    let want = payload_len.min(5 + MAX_SECTION_NAME as u64) as usize;
    let mut buf = vec![0u8; want];
    source.read_at(payload_offset, &mut buf)?;
    let mut reader = BinaryReader::new(&buf, 0);
    let name_len = reader
        .read_var_u32()
        .map_err(|_| malformed("custom section without a valid name length".into()))?;
    let name_start = reader.original_position() as u64;
    let data_offset = payload_offset + name_start + u64::from(name_len);
    if name_start + u64::from(name_len) > payload_len {
        return Err(malformed(format!(
            "custom section name of {name_len} bytes overruns its section"
        )));
    }
    if name_len as usize > MAX_SECTION_NAME {
        return Ok(CustomName {
            name: None,
            data_offset,
        });
    }
    let start = name_start as usize;
    let name = std::str::from_utf8(&buf[start..start + name_len as usize])
        .map_err(|_| malformed("custom section name is not UTF-8".into()))?;
    Ok(CustomName {
        name: Some(name.to_owned()),
        data_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with_customs() -> Vec<u8> {
        let mut m = wat::parse_str("(module (func (export \"f\")) (memory 1))").unwrap();
        for (name, data) in [
            ("producers", &b"x"[..]),
            ("cup.definition", b"{}"),
            ("name", b""),
        ] {
            wasm_encoder::Section::append_to(
                &wasm_encoder::CustomSection {
                    name: name.into(),
                    data: data.into(),
                },
                &mut m,
            );
        }
        m
    }

    #[test]
    fn memory_and_seek_scans_agree() {
        let bytes = module_with_customs();
        let a = Layout::from_bytes(&bytes).unwrap();
        let b = Layout::from_reader(&mut std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.encoding, Encoding::Module);
        assert_eq!(a.cup_sections().count(), 1);
        assert_eq!(a.sections.last().unwrap().end(), bytes.len() as u64);
    }

    #[test]
    fn kept_ranges_skip_cup_sections() {
        let bytes = module_with_customs();
        let layout = Layout::from_bytes(&bytes).unwrap();
        let ranges = layout.kept_ranges();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        let cup = layout.cup_sections().next().unwrap();
        assert_eq!(ranges[0].end, cup.offset);
        assert_eq!(ranges[1].start, cup.end());
    }

    #[test]
    fn rejects_non_wasm_and_truncation() {
        assert!(matches!(
            Layout::from_bytes(b"hello world"),
            Err(Error::NotWasm)
        ));
        assert!(matches!(
            Layout::from_bytes(b"\0as"),
            Err(Error::Truncated(_))
        ));
        assert!(matches!(
            Layout::from_bytes(b"\0asm\x02\0\0\0"),
            Err(Error::UnsupportedVersion(2))
        ));
        let bytes = module_with_customs();
        for cut in [9, bytes.len() / 2, bytes.len() - 1] {
            let err = Layout::from_bytes(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, Error::Truncated(_)), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn reads_component_top_level_only() {
        let comp =
            wat::parse_str("(component (core module (@custom \"cup.definition\" \"inner\")) )")
                .unwrap();
        let layout = Layout::from_bytes(&comp).unwrap();
        assert_eq!(layout.encoding, Encoding::Component);
        assert_eq!(
            layout.cup_sections().count(),
            0,
            "nested sections are not the package"
        );
    }
}
