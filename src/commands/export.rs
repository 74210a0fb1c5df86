//! `export`: the checkpoint's user → building map (or the failed rows), or with `--links`
//! the live Connect links, as CSV or JSON lines on stdout. Streamed: a million rows need
//! no memory.

use super::stdout::print;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::links::LIVE_LINK_HEADER;
use crate::cli::{ExportArgs, StateFilter};
use crate::date;
use crate::error::AppError;
use crate::exit_code::ExitCode;
use crate::report::csv::EXPORT_HEADER;

/// `export`: the rows (or `--links`: the live links, capabilities: stdout only, never
/// logged) in the chosen format.
pub fn export(args: &ExportArgs) -> Result<ExitCode, AppError> {
    let checkpoint = Checkpoint::open_read_only(&args.checkpoint)?;
    if args.links {
        // The links' JSON keeps an empty cell a string; the rows' JSON makes it null.
        let today = date::today();
        return print(args.format, LIVE_LINK_HEADER.to_vec(), false, |each| {
            checkpoint.for_each_live_link(&today, each)
        });
    }
    if args.state == Some(StateFilter::Vanished) {
        return print(args.format, EXPORT_HEADER.to_vec(), true, |each| {
            checkpoint.for_each_vanished_export_row(each)
        });
    }
    if args.state == Some(StateFilter::Failed) {
        return super::export_failed::export_failed(&checkpoint, args.format);
    }
    let state = args.state.map(state_name);
    print(args.format, EXPORT_HEADER.to_vec(), true, |each| {
        checkpoint.for_each_export_row(state, each)
    })
}

fn state_name(state: StateFilter) -> &'static str {
    match state {
        StateFilter::Done => "done",
        StateFilter::Failed => "failed",
        StateFilter::Unresolved => "unresolved",
        StateFilter::Pending => "pending",
        StateFilter::Posting => "posting",
        StateFilter::Vanished => "vanished",
    }
}
