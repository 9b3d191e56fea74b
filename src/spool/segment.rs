//! The spool's files: segments of checksummed records, named after the sequence number of
//! their first record (`00000000000000000042.seg`).
//!
//! A record is `len: u32 LE | crc32: u32 LE | seq: u64 LE | payload (len bytes)`, the checksum
//! covering the sequence number and the payload. A record cut short by a crash (the process, or
//! the machine before the file was synced) is the last one of the last segment: opening the
//! spool truncates it away. A record whose checksum does not match elsewhere is corruption: it
//! and the rest of its segment are skipped (and counted), never read as an event.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record's header.
pub(super) const HEADER: usize = 16;
/// Largest payload a record may carry (an event is a few KiB at most; a larger length in a
/// header is corruption).
pub(super) const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// One record as read back.
#[derive(Debug)]
pub(super) struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Appends the framed record of `payload` to `out`.
pub(super) fn frame(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The path of the segment whose first record is `first`.
pub(super) fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The segments of `dir`, by first sequence number, oldest first.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// What reading one record found.
#[derive(Debug)]
pub(super) enum Read1 {
    Record(Record),
    /// The clean end of the file.
    End,
    /// A record cut short (a crash mid-write): where the good part of the file ends.
    Torn,
    /// A record whose checksum or length is wrong.
    Corrupt,
}

/// Reads records one after the other from a segment file.
pub(super) struct SegmentReader {
    file: BufReader<File>,
    /// Bytes of good records read so far.
    pub offset: u64,
}

impl SegmentReader {
    pub(super) fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: BufReader::with_capacity(256 * 1024, File::open(path)?),
            offset: 0,
        })
    }

    /// Continues reading at `offset` (a record boundary returned earlier).
    pub(super) fn open_at(path: &Path, offset: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            file: BufReader::with_capacity(256 * 1024, file),
            offset,
        })
    }

    pub(super) fn next(&mut self) -> io::Result<Read1> {
        let mut header = [0u8; HEADER];
        match read_full(&mut self.file, &mut header)? {
            0 => return Ok(Read1::End),
            n if n < HEADER => return Ok(Read1::Torn),
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > MAX_PAYLOAD {
            return Ok(Read1::Corrupt);
        }
        let mut payload = vec![0u8; len];
        if read_full(&mut self.file, &mut payload)? < len {
            return Ok(Read1::Torn);
        }
        let mut check = crc32fast::Hasher::new();
        check.update(&seq_bytes);
        check.update(&payload);
        if check.finalize() != crc {
            return Ok(Read1::Corrupt);
        }
        self.offset += (HEADER + len) as u64;
        Ok(Read1::Record(Record { seq, payload }))
    }
}

/// Reads until `buf` is full or the file ends; how many bytes were read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// What a segment holds, found by reading it through.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// Records that read back whole.
    pub records: u64,
    /// The sequence number after the last good record, if any.
    pub next_seq: Option<u64>,
    /// Bytes of good records.
    pub good_bytes: u64,
    /// Whether the file ended in a record cut short.
    pub torn: bool,
    /// Whether a record failed its checksum.
    pub corrupt: bool,
}

/// Reads a segment through.
pub(super) fn scan(path: &Path) -> io::Result<Scan> {
    let mut reader = SegmentReader::open(path)?;
    let mut scan = Scan::default();
    loop {
        match reader.next()? {
            Read1::Record(r) => {
                scan.records += 1;
                scan.next_seq = Some(r.seq + 1);
            }
            Read1::End => break,
            Read1::Torn => {
                scan.torn = true;
                break;
            }
            Read1::Corrupt => {
                scan.corrupt = true;
                break;
            }
        }
    }
    scan.good_bytes = reader.offset;
    Ok(scan)
}

/// The segment being appended to.
pub(super) struct Appender {
    file: File,
    pub bytes: u64,
}

impl Appender {
    /// Opens (creating) the segment starting at `first`, cut to its `good_bytes`.
    pub(super) fn open(dir: &Path, first: u64, good_bytes: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path(dir, first))?;
        file.set_len(good_bytes)?;
        let mut file = file;
        file.seek(SeekFrom::Start(good_bytes))?;
        Ok(Self {
            file,
            bytes: good_bytes,
        })
    }

    /// Writes framed records (one `write` system call for all of them, as far as the kernel
    /// takes them at once).
    pub(super) fn write(&mut self, framed: &[u8]) -> io::Result<()> {
        if let Err(err) = self.file.write_all(framed) {
            // Whatever part did reach the file is cut away: the segment keeps whole records.
            let _ = self.file.set_len(self.bytes);
            let _ = self.file.seek(SeekFrom::Start(self.bytes));
            return Err(err);
        }
        self.bytes += framed.len() as u64;
        Ok(())
    }

    /// Makes what was written survive a power loss.
    pub(super) fn sync(&self) -> io::Result<()> {
        rustix::fs::fdatasync(&self.file).map_err(io::Error::from)
    }
}

/// Makes the directory's entries (new and removed segments) survive a power loss.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut reader = SegmentReader::open(path).expect("open");
        let mut out = Vec::new();
        while let Read1::Record(r) = reader.next().expect("read") {
            out.push((r.seq, r.payload));
        }
        out
    }

    #[test]
    fn records_read_back_and_a_torn_tail_is_found() {
        let dir = tempfile::tempdir().expect("dir");
        let mut appender = Appender::open(dir.path(), 7, 0).expect("open");
        let mut framed = Vec::new();
        frame(&mut framed, 7, b"seven");
        frame(&mut framed, 8, b"eight");
        appender.write(&framed).expect("write");
        appender.sync().expect("sync");
        let file = path(dir.path(), 7);
        assert_eq!(
            records(&file),
            vec![(7, b"seven".to_vec()), (8, b"eight".to_vec())]
        );
        // A crash in the middle of the next record.
        let mut more = Vec::new();
        frame(&mut more, 9, b"nine");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open")
            .write_all(&more[..more.len() - 2])
            .expect("write");
        let s = scan(&file).expect("scan");
        assert_eq!((s.records, s.next_seq, s.torn), (2, Some(9), true));
        // Reopening for appends cuts the torn record away.
        let mut appender = Appender::open(dir.path(), 7, s.good_bytes).expect("reopen");
        appender.write(&more).expect("write");
        assert_eq!(records(&file).len(), 3);
        assert_eq!(list(dir.path()).expect("list"), vec![7]);
    }

    #[test]
    fn a_flipped_bit_is_corruption_not_an_event() {
        let dir = tempfile::tempdir().expect("dir");
        let mut appender = Appender::open(dir.path(), 0, 0).expect("open");
        let mut framed = Vec::new();
        frame(&mut framed, 0, b"{\"kills\":10}");
        appender.write(&framed).expect("write");
        let file = path(dir.path(), 0);
        let mut bytes = std::fs::read(&file).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        std::fs::write(&file, &bytes).expect("write");
        let s = scan(&file).expect("scan");
        assert!(s.corrupt);
        assert_eq!(s.records, 0);
    }
}
