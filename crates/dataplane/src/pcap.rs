//! Classic pcap files (microsecond timestamps), for tests, benchmarks and captures.

use std::io::{self, Read, Write};

/// Link type of Ethernet captures.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Link type of raw IP captures.
pub const LINKTYPE_RAW: u32 = 101;

const MAGIC: u32 = 0xa1b2_c3d4;
const MAGIC_SWAPPED: u32 = 0xd4c3_b2a1;
/// Largest record accepted when reading (bounds the allocation a corrupt file can cause).
pub const MAX_SNAPLEN: u32 = 262_144;

/// Errors reading a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// I/O failed.
    #[error("pcap I/O: {0}")]
    Io(#[from] io::Error),
    /// Not a pcap file (or a nanosecond/pcapng one).
    #[error("not a classic pcap file (magic {0:#010x})")]
    BadMagic(u32),
    /// A record claims more bytes than any capture holds.
    #[error("pcap record of {0} bytes exceeds the {MAX_SNAPLEN}-byte limit")]
    RecordTooLarge(u32),
}

/// Writes a pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(mut out: W, linktype: u32) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&65_535u32.to_le_bytes());
        header.extend_from_slice(&linktype.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out })
    }

    /// Appends one packet captured at `timestamp_us` (microseconds since the epoch).
    pub fn write_packet(&mut self, timestamp_us: u64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("packet too large"))?;
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&((timestamp_us / 1_000_000) as u32).to_le_bytes());
        record[4..8].copy_from_slice(&((timestamp_us % 1_000_000) as u32).to_le_bytes());
        record[8..12].copy_from_slice(&len.to_le_bytes());
        record[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(data)
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a pcap file record by record.
pub struct PcapReader<R: Read> {
    input: R,
    swapped: bool,
    linktype: u32,
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapRecord {
    /// Capture time in microseconds since the epoch.
    pub timestamp_us: u64,
    /// Captured bytes.
    pub data: Vec<u8>,
    /// Length on the wire.
    pub orig_len: u32,
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header.
    pub fn new(mut input: R) -> Result<Self, PcapError> {
        let mut header = [0u8; 24];
        input.read_exact(&mut header)?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let swapped = match magic {
            MAGIC => false,
            MAGIC_SWAPPED => true,
            other => return Err(PcapError::BadMagic(other)),
        };
        let field = |bytes: [u8; 4]| {
            if swapped {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let linktype = field([header[20], header[21], header[22], header[23]]);
        Ok(Self {
            input,
            swapped,
            linktype,
        })
    }

    /// The link type of the records.
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<PcapRecord>, PcapError> {
        let mut header = [0u8; 16];
        match self.input.read_exact(&mut header) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(err) => return Err(err.into()),
        }
        let field = |at: usize| {
            let bytes = [header[at], header[at + 1], header[at + 2], header[at + 3]];
            if self.swapped {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        let (secs, micros, caplen, orig_len) = (field(0), field(4), field(8), field(12));
        if caplen > MAX_SNAPLEN {
            return Err(PcapError::RecordTooLarge(caplen));
        }
        let mut data = vec![0u8; caplen as usize];
        self.input.read_exact(&mut data)?;
        Ok(Some(PcapRecord {
            timestamp_us: u64::from(secs) * 1_000_000 + u64::from(micros),
            data,
            orig_len,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut writer = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
        writer.write_packet(1_500_000, &[1, 2, 3]).unwrap();
        writer.write_packet(2_000_001, &[4]).unwrap();
        let bytes = writer.into_inner().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16 + 1);
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.linktype(), LINKTYPE_ETHERNET);
        let first = reader.next_record().unwrap().unwrap();
        assert_eq!(
            (first.timestamp_us, first.data.as_slice()),
            (1_500_000, &[1u8, 2, 3][..])
        );
        let second = reader.next_record().unwrap().unwrap();
        assert_eq!(
            (second.timestamp_us, second.data.as_slice()),
            (2_000_001, &[4u8][..])
        );
        assert!(reader.next_record().unwrap().is_none());
    }

    #[test]
    fn rejects_bad_magic_and_huge_records() {
        assert!(matches!(
            PcapReader::new(&[0u8; 24][..]),
            Err(PcapError::BadMagic(0))
        ));
        let mut bytes = PcapWriter::new(Vec::new(), 1)
            .unwrap()
            .into_inner()
            .unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        let mut reader = PcapReader::new(&bytes[..]).unwrap();
        assert!(matches!(
            reader.next_record(),
            Err(PcapError::RecordTooLarge(_))
        ));
    }
}
