//! The documentation, checked like code (issue 14: "every command shown in the docs is one
//! the tests actually ran; no link is dead").
//!
//! * Every relative link in `README.md`, `docs/*.md` and `scripts/README.md` points to a file
//!   that exists, and every `#anchor` to a heading of the target (GitHub's slugs).
//! * Every shell command line in a fenced block that invokes `podero-onboard` (directly, by
//!   path, from a systemd `ExecStart=`, or as `cargo run --release -- …`) parses with the real
//!   CLI, so no page shows a flag or value that does not exist. A usage synopsis with
//!   `<placeholders>` goes in a block fenced as `synopsis`, which is not parsed.
//! * `README.md` stays a front page (at most [`README_MAX_LINES`] lines) and its test command
//!   is exactly the one `.ci/run` runs.
//!
//! Markdown and shell are parsed by hand, line by line: the docs use a small, regular subset
//! (ATX headings, inline links, fenced blocks), and a parser crate would be a dependency for
//! one test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};
use podero_onboard::cli::Cli;

/// The info string of a fenced block whose lines are a usage synopsis
/// (`podero-onboard run <CSV|-> [--rate N]`), not commands to run: its lines are not parsed.
/// Everything else in a fenced block that invokes podero-onboard must parse.
const SYNOPSIS_FENCE: &str = "synopsis";

/// The README is the front page; the rest lives in `docs/`.
const README_MAX_LINES: usize = 250;

/// What a `$VAR`, `${VAR}` or `$(…)` in a documented command stands for while parsing it:
/// a value every option that takes a string, a path or a number accepts.
const VARIABLE_PLACEHOLDER: &str = "1";

/// What a required option that is normally read from the environment (`PODERO_ORG_ID` for
/// `--org-id`) gets when the documented command leaves it to the environment.
const ENV_PLACEHOLDER: &str = "6f726700-0000-4000-8000-000000000001";

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let pages = pages();
    let mut dead = Vec::new();
    for (page, text) in &pages {
        for link in links(text) {
            if let Err(why) = check_link(page, &link.target, &pages) {
                dead.push(format!(
                    "{}:{}: ({}) {why}",
                    page.display(),
                    link.line,
                    link.target
                ));
            }
        }
    }
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn every_documented_podero_onboard_command_parses_with_the_real_cli() {
    let mut found = 0;
    let mut bad = Vec::new();
    for (page, text) in pages() {
        for command in commands(&text) {
            found += 1;
            if let Err(error) = parse_with_cli(&command.argv) {
                bad.push(format!(
                    "{}:{}: `{}`\n    {}",
                    page.display(),
                    command.line,
                    command.argv.join(" "),
                    error.trim().replace('\n', "\n    ")
                ));
            }
        }
    }
    // The README alone shows more than this; fewer means the extraction broke.
    assert!(found >= 10, "only {found} commands found in the docs");
    assert!(
        bad.is_empty(),
        "commands the CLI rejects:\n{}",
        bad.join("\n")
    );
}

#[test]
fn readme_is_a_front_page_with_the_ci_test_command() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move detail into docs/"
    );
    let readme_tests = lines_starting_with(&code_lines(&readme), "cargo test");
    let ci_tests = lines_starting_with(&read(".ci/run"), "cargo test");
    assert_eq!(
        ci_tests.len(),
        1,
        ".ci/run should run one test command: {ci_tests:?}"
    );
    assert_eq!(
        readme_tests, ci_tests,
        "README.md's test command must be exactly the one .ci/run runs"
    );
    assert!(
        code_lines(&readme)
            .lines()
            .any(|l| l.trim().starts_with("cargo run --release -- demo")),
        "README.md should show the demo command `cargo run --release -- demo`"
    );
}

// The extractors, on small inputs, so a change that breaks them fails here and not silently.

#[test]
fn extracts_commands_through_prompts_continuations_variables_pipes_and_cron() {
    let md = "```sh\n\
              $ podero-onboard run in.csv --org-id $ORG \\\n    --checkpoint \"${DIR}/x.sqlite\" \
              -q | tee out.txt 2>&1 # note\n\
              15 2 * * *  . /etc/p.env && /usr/local/bin/podero-onboard status --checkpoint a > s\n\
              cargo run --release -- demo\n\
              echo podero-onboard run\n\
              ```\n\
              podero-onboard run outside.csv --not-in-a-block\n\
              ```ini\nExecStart=/usr/bin/podero-onboard export --checkpoint c\n```\n\
              ```synopsis\npodero-onboard run <CSV|-> [--rate N]\n```\n";
    let found: Vec<(usize, String)> = commands(md)
        .into_iter()
        .map(|c| (c.line, c.argv.join(" ")))
        .collect();
    assert_eq!(
        found,
        [
            (
                2,
                "podero-onboard run in.csv --org-id 1 --checkpoint 1/x.sqlite -q".to_owned()
            ),
            (4, "podero-onboard status --checkpoint a".to_owned()),
            (5, "podero-onboard demo".to_owned()),
            (10, "podero-onboard export --checkpoint c".to_owned()),
        ]
    );
    assert!(parse_with_cli(&found_argv("podero-onboard run in.csv --checkpoint c")).is_ok());
    assert!(parse_with_cli(&found_argv("podero-onboard run in.csv --bogus-flag")).is_err());
    assert!(parse_with_cli(&found_argv("podero-onboard --help")).is_ok());
}

#[test]
fn variables_expand_across_blocks_and_prompted_blocks_skip_their_output() {
    let md = "```sh\n$ L=\"--rate 5 --json\"\n```\ntext\n\
              ```sh\npodero-onboard run a.csv $L $LATER\n```\n\
              ```console\n$ podero-onboard --version\npodero-onboard 0.1.0\n```\n";
    let found: Vec<String> = commands(md).into_iter().map(|c| c.argv.join(" ")).collect();
    assert_eq!(
        found,
        [
            "podero-onboard run a.csv --rate 5 --json 1",
            "podero-onboard --version"
        ]
    );
}

#[test]
fn extracts_links_outside_code_and_github_slugs() {
    let md = "# The CSV\n## Nothing lost, nothing doubled\n## `--only-failed` · re-runs\n\
              ## The CSV\nsee [a](docs/a.md#x) and `[not](a link)` [b](#the-csv-1 \"t\")\n\
              ```\n[in](code.md)\n```\n[ref]: other.md\n";
    let targets: Vec<String> = links(md).into_iter().map(|l| l.target).collect();
    assert_eq!(targets, ["docs/a.md#x", "#the-csv-1", "other.md"]);
    assert_eq!(
        anchors(md),
        BTreeSet::from(
            [
                "the-csv",
                "nothing-lost-nothing-doubled",
                "--only-failed--re-runs",
                "the-csv-1"
            ]
            .map(String::from)
        )
    );
}

fn found_argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

// ---------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn read(relative: &str) -> String {
    fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The checked pages, by path relative to the repository root.
fn pages() -> BTreeMap<PathBuf, String> {
    let mut paths = vec![
        PathBuf::from("README.md"),
        PathBuf::from("scripts/README.md"),
    ];
    if let Ok(entries) = fs::read_dir(root().join("docs")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                paths.push(Path::new("docs").join(name));
            }
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let text = read(&p.to_string_lossy());
            (p, text)
        })
        .collect()
}

/// A Markdown line outside fenced code, or one fenced block: its info string (the word
/// after the opening fence) and its lines.
enum Chunk<'a> {
    Prose(usize, &'a str),
    Code(&'a str, NumberedLines<'a>),
}

/// Lines with their 1-based line numbers in the page.
type NumberedLines<'a> = Vec<(usize, &'a str)>;

/// Splits a page into prose lines and fenced blocks (``` or ~~~, any indentation).
fn chunks(md: &str) -> Vec<Chunk<'_>> {
    let mut out = Vec::new();
    let mut block: Option<(&str, &str, NumberedLines)> = None;
    for (i, line) in md.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        match (&mut block, fence) {
            (Some((open, _, _)), Some(f)) if *open == f && trimmed.trim_end() == f => {
                let (_, info, lines) = block.take().expect("open block");
                out.push(Chunk::Code(info, lines));
            }
            (Some((_, _, lines)), _) => lines.push((number, line)),
            (None, Some(f)) => block = Some((f, trimmed[f.len()..].trim(), Vec::new())),
            (None, None) => out.push(Chunk::Prose(number, line)),
        }
    }
    if let Some((_, info, lines)) = block {
        out.push(Chunk::Code(info, lines));
    }
    out
}

/// The text of every fenced block, joined (for "which commands does the README show").
pub(crate) fn code_lines(md: &str) -> String {
    chunks(md)
        .into_iter()
        .filter_map(|c| match c {
            Chunk::Code(_, lines) => Some(lines),
            Chunk::Prose(..) => None,
        })
        .flatten()
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

/// Lines that start with `prefix`, trimmed, without a trailing `# comment`.
fn lines_starting_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Links and anchors
// ---------------------------------------------------------------------------------------

/// A link found in prose.
struct Link {
    line: usize,
    target: String,
}

/// Inline links and images `[text](target "title")` and reference definitions
/// `[label]: target`, outside code blocks and code spans.
fn links(md: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for chunk in chunks(md) {
        let Chunk::Prose(line, text) = chunk else {
            continue;
        };
        let text = without_code_spans(text);
        let mut targets = inline_targets(&text);
        if let Some(target) = reference_definition(&text) {
            targets.push(target);
        }
        out.extend(targets.into_iter().map(|target| Link { line, target }));
    }
    out
}

fn without_code_spans(line: &str) -> String {
    line.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join("")
}

fn inline_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0usize;
        let end = after.char_indices().find(|&(_, c)| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth == 0 => true,
            ')' => {
                depth -= 1;
                false
            }
            _ => false,
        });
        let Some((end, _)) = end else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end..];
    }
    out
}

fn reference_definition(line: &str) -> Option<String> {
    let line = line.trim_start();
    let rest = line.strip_prefix('[')?;
    let (label, after) = rest.split_once("]:")?;
    if label.is_empty() || label.starts_with('^') {
        return None;
    }
    after.split_whitespace().next().map(String::from)
}

/// Checks one link from `page`: external links are not fetched (no network in tests).
fn check_link(page: &Path, target: &str, pages: &BTreeMap<PathBuf, String>) -> Result<(), String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_owned()
    } else {
        normalize(&page.parent().unwrap_or(Path::new("")).join(path))?
    };
    if !root().join(&file).exists() {
        return Err(format!("{} does not exist", file.display()));
    }
    let Some(anchor) = anchor else { return Ok(()) };
    if file.extension().is_none_or(|e| e != "md") {
        return Ok(()); // e.g. `src/x.rs#L10`: GitHub line anchors, not headings
    }
    let text = match pages.get(&file) {
        Some(text) => text.clone(),
        None => read(&file.to_string_lossy()),
    };
    if anchors(&text).contains(anchor) {
        Ok(())
    } else {
        Err(format!("{} has no heading #{anchor}", file.display()))
    }
}

/// Resolves `.` and `..` without touching the file system; refuses to leave the repository.
fn normalize(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("points outside the repository".into());
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute path: use a relative link".into());
            }
        }
    }
    Ok(out)
}

/// The anchors GitHub generates for the page's headings: lower case, punctuation dropped,
/// spaces to `-`, and `-1`, `-2` … for repeated headings.
fn anchors(md: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for chunk in chunks(md) {
        let Chunk::Prose(_, line) = chunk else {
            continue;
        };
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = slug(&line[hashes..]);
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

fn slug(heading: &str) -> String {
    let text = link_texts(heading.trim());
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `[text](target)` → `text`, as GitHub slugs the rendered heading.
fn link_texts(heading: &str) -> String {
    let mut out = heading.to_owned();
    while let (Some(open), Some(mid)) = (out.find('['), out.find("](")) {
        let Some(close) = out[mid..].find(')').map(|c| mid + c) else {
            break;
        };
        if open > mid {
            break;
        }
        out = format!(
            "{}{}{}",
            &out[..open],
            &out[open + 1..mid],
            &out[close + 1..]
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A `podero-onboard` command line found in a fenced block.
struct DocCommand {
    line: usize,
    /// `podero-onboard` and its arguments, as the shell would pass them.
    argv: Vec<String>,
}

/// Every invocation of `podero-onboard` in the page's fenced blocks: `\` continuations are
/// joined, a leading `$ ` prompt and `# comments` dropped, variables replaced, and each
/// command of a pipeline or `&&` list looked at separately, without its redirections.
fn commands(md: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    // A page is one shell session: a variable set in one block is used in the next ones.
    let mut assigned: Vec<(String, String)> = Vec::new();
    for chunk in chunks(md) {
        let Chunk::Code(info, lines) = chunk else {
            continue;
        };
        if info == SYNOPSIS_FENCE {
            continue;
        }
        // A transcript (a non-shell block with `$ ` prompts) mixes commands with their
        // output: only the prompted lines are commands there (`podero-onboard 0.1.0` is
        // output). In a `sh` block every line is a command.
        let prompted = !matches!(info, "sh" | "bash" | "shell")
            && lines.iter().any(|(_, l)| l.trim_start().starts_with("$ "));
        for (line, logical) in logical_lines(&lines) {
            let logical = logical.trim_start();
            let logical = match logical.strip_prefix("$ ") {
                Some(command) => command,
                None if prompted => continue,
                None => logical,
            };
            if let Some(assignment) = assignment(logical) {
                assigned.push(assignment);
                continue;
            }
            let logical = substitute(logical, &assigned);
            for segment in segments(&tokenize(&logical)) {
                if let Some(argv) = invocation(&segment) {
                    out.push(DocCommand { line, argv });
                }
            }
        }
    }
    out
}

/// `NAME="value"` alone on a line: a shell variable later lines of the block use (unquoted,
/// so its value splits into words, as `L="--language de ..."; links $L` does).
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let value = value.strip_prefix('"')?.strip_suffix('"')?;
    (is_env_name(name) && !value.contains('"')).then(|| (name.to_owned(), value.to_owned()))
}

/// Replaces `$NAME` of a variable assigned earlier in the block by its value.
fn substitute(line: &str, assigned: &[(String, String)]) -> String {
    let mut line = line.to_owned();
    for (name, value) in assigned {
        let pattern = format!("${name}");
        let mut out = String::new();
        let mut rest = line.as_str();
        while let Some(at) = rest.find(&pattern) {
            let after = &rest[at + pattern.len()..];
            let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            out.push_str(&rest[..at]);
            out.push_str(if whole { value } else { &pattern });
            rest = after;
        }
        out.push_str(rest);
        line = out;
    }
    line
}

/// Joins lines ending in `\` with the next; keeps the first line's number.
fn logical_lines(lines: &[(usize, &str)]) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for &(number, line) in lines {
        let (text, continues) = match line.trim_end().strip_suffix('\\') {
            Some(text) => (text, true),
            None => (line, false),
        };
        match out.last_mut() {
            Some((_, joined)) if open => {
                joined.push(' ');
                joined.push_str(text.trim_start());
            }
            _ => out.push((number, text.to_owned())),
        }
        open = continues;
    }
    out
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    /// `|`, `||`, `&&`, `;`, `&`: separates commands.
    Control(String),
    /// `>`, `>>`, `<`, `2>`, `2>&`, `&>`: takes the next word as its target.
    Redirect,
}

/// A small POSIX-shell word splitter: quotes, backslashes, `#` comments, operators, and
/// `$VAR` / `${VAR}` / `$(…)` replaced by [`VARIABLE_PLACEHOLDER`].
fn tokenize(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut tokens = Vec::new();
    let mut word: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                tokens.extend(word.take().map(Token::Word));
                i += 1;
            }
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    w.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        w.push(chars[i + 1]);
                        i += 2;
                    } else if chars[i] == '$' {
                        i = expand(&chars, i, w);
                    } else {
                        w.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.get(i + 1));
                i += 2;
            }
            '$' => i = expand(&chars, i, word.get_or_insert_with(String::new)),
            '|' | '&' | ';' | '<' | '>' => {
                let mut op = String::new();
                // `2>file`: a word of digits right before a redirection is its descriptor.
                match word.take() {
                    Some(w) if (c == '>' || c == '<') && w.chars().all(|d| d.is_ascii_digit()) => {
                        op.push_str(&w)
                    }
                    other => tokens.extend(other.map(Token::Word)),
                }
                while i < chars.len() && "|&;<>".contains(chars[i]) {
                    op.push(chars[i]);
                    i += 1;
                }
                tokens.push(if op.contains(['<', '>']) {
                    Token::Redirect
                } else {
                    Token::Control(op)
                });
            }
            _ => {
                word.get_or_insert_with(String::new).push(c);
                i += 1;
            }
        }
    }
    tokens.extend(word.map(Token::Word));
    tokens
}

/// Replaces the variable or command substitution at `chars[at] == '$'`; returns the index
/// after it.
fn expand(chars: &[char], at: usize, word: &mut String) -> usize {
    let next = chars.get(at + 1).copied();
    let end = match next {
        Some('{') => chars[at..]
            .iter()
            .position(|&c| c == '}')
            .map(|p| at + p + 1),
        Some('(') => {
            let mut depth = 0;
            (at + 1..chars.len()).find(|&j| {
                match chars[j] {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
        }
        .map(|j| j + 1),
        Some(c) if c.is_ascii_alphabetic() || c == '_' => Some(
            (at + 1..chars.len())
                .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '_'))
                .unwrap_or(chars.len()),
        ),
        _ => None,
    };
    match end {
        Some(end) => {
            word.push_str(VARIABLE_PLACEHOLDER);
            end.min(chars.len())
        }
        None => {
            word.push('$');
            at + 1
        }
    }
}

/// Splits at control operators and drops redirections with their targets.
fn segments(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut skip_target = false;
    for token in tokens {
        match token {
            Token::Control(_) => out.push(Vec::new()),
            Token::Redirect => skip_target = true,
            Token::Word(_) if skip_target => skip_target = false,
            Token::Word(w) => out.last_mut().expect("one segment").push(w.clone()),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The argv of `podero-onboard` if this simple command runs it: directly or by path (after
/// any `VAR=value` assignments), as a systemd `ExecStart=…/podero-onboard`, or through
/// `cargo run [flags] -- …`.
fn invocation(words: &[String]) -> Option<Vec<String>> {
    let is_binary = |w: &str| w.rsplit('/').next() == Some("podero-onboard");
    let mut rest = words;
    while let Some((first, tail)) = rest.split_first() {
        match first.split_once('=') {
            Some((name, value)) if is_env_name(name) => {
                if is_binary(value) {
                    return Some(argv(tail));
                }
                rest = tail;
            }
            _ => break,
        }
    }
    let (first, tail) = rest.split_first()?;
    if is_binary(first) {
        return Some(argv(tail));
    }
    if first == "cargo" && tail.first().is_some_and(|w| w == "run") {
        let flags = &tail[1..];
        let dashes = flags.iter().position(|w| w == "--");
        let before = &flags[..dashes.unwrap_or(flags.len())];
        if before.iter().all(|w| w.starts_with('-')) {
            return Some(argv(dashes.map_or(&[][..], |d| &flags[d + 1..])));
        }
    }
    None
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn argv(args: &[String]) -> Vec<String> {
    std::iter::once("podero-onboard".to_owned())
        .chain(args.iter().cloned())
        .collect()
}

/// Parses like `main` does, with the options the docs leave to the environment
/// (`PODERO_ORG_ID`) given a placeholder. `--help` and `--version` count as parsing.
fn parse_with_cli(argv: &[String]) -> Result<(), String> {
    let command = with_env_placeholders(Cli::command());
    match command.try_get_matches_from(argv) {
        Ok(matches) => Cli::from_arg_matches(&matches)
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Gives every required option that has an `env` a default, recursively: the test cannot
/// set environment variables (that needs `unsafe` since edition 2024, and the crate forbids
/// it), and the docs rightly leave `--org-id` to `PODERO_ORG_ID`.
fn with_env_placeholders(mut command: clap::Command) -> clap::Command {
    let ids: Vec<_> = command
        .get_arguments()
        .filter(|a| a.get_env().is_some() && a.is_required_set())
        .map(|a| a.get_id().clone())
        .collect();
    for id in ids {
        command = command.mut_arg(id, |a| a.required(false).default_value(ENV_PLACEHOLDER));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, with_env_placeholders);
    }
    command
}
