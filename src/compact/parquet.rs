//! STUB: replaced by the Parquet writer (branch wt9-parquet).

use std::fs::File;

#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("Parquet output is not built yet")]
    NotBuilt,
}

pub struct ParquetPartWriter;

impl ParquetPartWriter {
    pub fn create(_file: File) -> Result<ParquetPartWriter, ParquetError> {
        Err(ParquetError::NotBuilt)
    }

    pub fn push(&mut self, _line: &[u8]) -> Result<(), ParquetError> {
        Err(ParquetError::NotBuilt)
    }

    pub fn finish(self) -> Result<u64, ParquetError> {
        Err(ParquetError::NotBuilt)
    }
}
