//! Why an access-control file could not be used.

use std::path::PathBuf;

/// A token file, policy file or audit log that cannot be used, with the place of the fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The file cannot be read (or the audit log opened).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than this crate reads.
    #[error("{path}: larger than {max} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// A line or entry of the file is invalid.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line number (1-based); 0 when the fault is not on one line.
        line: usize,
        /// What is wrong, in the file's terms.
        message: String,
    },
    /// A client certificate that cannot be parsed.
    #[error("client certificate: {0}")]
    Certificate(String),
}

/// Reads a whole file of at most `max` bytes (checked on the open file, then while reading,
/// so a file growing meanwhile cannot make it read more).
pub(crate) fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, AccessError> {
    use std::io::Read;
    let io = |source| AccessError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(AccessError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(bytes)
}
