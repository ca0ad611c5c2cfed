//! The samples of an archive folder or of a tape stream, in order, through one iterator, so
//! that a front end that takes either (`ls -`, `extract -`) handles them once.

use std::io::Read;

use crate::read::stream::{StreamItem, StreamReader};
use crate::read::{Archive, Iter, Sample};
use crate::Result;

/// The samples of an archive (through its index, see [`Archive::iter`]) or of a stream
/// (front to back, see [`StreamReader`]), in order. A damaged sample is an error; after
/// one, an archive goes on with the next sample and a stream ends.
pub struct Samples<'r> {
    from: From<'r>,
}

enum From<'r> {
    Archive(Iter),
    Stream(Box<dyn Iterator<Item = Result<StreamItem>> + 'r>),
}

impl<'r> Samples<'r> {
    /// Every sample of `archive`.
    pub fn of_archive(archive: &Archive) -> Samples<'r> {
        Samples {
            from: From::Archive(archive.iter()),
        }
    }

    /// Every sample of the stream `reader` reads; its shard ends and manifests are checked
    /// by the reader and passed over here.
    pub fn of_stream<R: Read + 'r>(reader: StreamReader<R>) -> Samples<'r> {
        Samples {
            from: From::Stream(Box::new(reader)),
        }
    }
}

impl Iterator for Samples<'_> {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.from {
            From::Archive(iter) => iter.next(),
            From::Stream(items) => loop {
                match items.next()? {
                    Ok(StreamItem::Sample(sample)) => return Some(Ok(sample)),
                    Ok(_) => continue,
                    Err(e) => return Some(Err(e)),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_and_its_stream_give_the_same_samples() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<(String, Vec<u8>)> = (0..40u8)
            .map(|i| (format!("k{i:02}"), vec![i; 300]))
            .collect();
        let mut w = crate::Writer::builder().create(dir.path()).unwrap();
        for (k, d) in &samples {
            w.append(k, &[("bin", d.as_slice())]).unwrap();
        }
        w.finish().unwrap();
        #[derive(Clone, Default)]
        struct Tape(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Tape {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let tape = Tape::default();
        let mut w = crate::WriterBuilder::for_profile(crate::MediaProfile::tape())
            .stream_record(4096)
            .align(4096)
            .create_stream(Box::new(tape.clone()), "s")
            .unwrap();
        for (k, d) in &samples {
            w.append(k, &[("bin", d.as_slice())]).unwrap();
        }
        w.finish().unwrap();
        let stream = tape.0.lock().unwrap().clone();
        let archive = Archive::open(dir.path()).unwrap();
        let read = |s: Samples| -> Vec<(String, Vec<u8>)> {
            s.map(|s| {
                let s = s.unwrap();
                (s.key().to_string(), s.field("bin").unwrap().to_vec())
            })
            .collect()
        };
        assert_eq!(read(Samples::of_archive(&archive)), samples);
        let reader = StreamReader::new(&stream[..], "s", crate::Limits::default()).unwrap();
        assert_eq!(read(Samples::of_stream(reader)), samples);
    }
}
