//! An in-memory pipe for the [`testing`](crate::testing) module: what one side writes, the other
//! reads, blocking until data arrives; dropping the writer is end of input, and writing after the
//! reader is dropped fails with a broken pipe, like a real pipe.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{self, Receiver, Sender};

/// A connected writer and reader.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = mpsc::channel();
    (
        PipeWriter { tx },
        PipeReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
    )
}

/// The writing end.
#[derive(Debug)]
pub(crate) struct PipeWriter {
    tx: Sender<Vec<u8>>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reading end is closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The reading end.
#[derive(Debug)]
pub(crate) struct PipeReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // Every writer is gone: end of input.
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_then_eof() {
        let (mut w, mut r) = pipe();
        w.write_all(b"ab").expect("open");
        w.write_all(b"c\n").expect("open");
        drop(w);
        let mut text = String::new();
        r.read_to_string(&mut text).expect("in memory");
        assert_eq!(text, "abc\n");
    }

    #[test]
    fn writing_to_a_closed_pipe_fails() {
        let (mut w, r) = pipe();
        drop(r);
        let err = w.write_all(b"x").expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
