//! What `export` prints: records streamed to stdout as CSV or JSON, for every export
//! (the rows, the links, the failed rows to fix).

use crate::checkpoint::CheckpointError;
use crate::cli::ExportFormat;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::report::records::Records;
use crate::report::stdout_written;

/// Streams the records `rows` produces to stdout; a checkpoint error ends the command, a
/// closed pipe ends it quietly.
pub(super) fn print(
    format: ExportFormat,
    header: Vec<&'static str>,
    empty_is_null: bool,
    rows: impl FnOnce(&mut dyn FnMut(Vec<String>)) -> Result<(), CheckpointError>,
) -> Result<ExitCode, AppError> {
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut records = match format {
        ExportFormat::Csv => match Records::csv(out, &header) {
            Ok(records) => records,
            Err(e) => return stdout_written(Err(e)).map(|()| ExitCode::Success),
        },
        ExportFormat::Json => Records::json(out, header, empty_is_null),
    };
    let mut failed = None;
    rows(&mut |cells| {
        if failed.is_none() {
            failed = records.write(cells).err();
        }
    })?;
    let written = match failed {
        Some(error) => Err(error),
        None => records.finish(),
    };
    stdout_written(written).map(|()| ExitCode::Success)
}
