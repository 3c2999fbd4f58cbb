//! The small file operations: listing, reading, editing, finding, grepping.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use tonic::Status;

use super::limits::MAX_SMALL_FILE_BYTES;
use super::paths::{file_info, io_status};
use super::root::{Kind, Root};
use super::staged::Staged;
use crate::pb;

/// The largest file EditFile changes.
const MAX_EDIT_BYTES: u64 = 16 << 20;
/// How deep walks (FindFiles, Grep) go.
const MAX_WALK_DEPTH: usize = 64;
/// How much of a file decides whether it is binary.
const BINARY_PROBE_BYTES: usize = 8 << 10;
/// The longest line Grep returns.
const MAX_GREP_LINE_BYTES: usize = 1000;

/// `value` when positive, `default` when zero; INVALID_ARGUMENT when
/// negative or above `max`.
pub fn bounded(field: &str, value: i32, default: usize, max: usize) -> Result<usize, Status> {
    match usize::try_from(value) {
        Ok(0) => Ok(default),
        Ok(n) if n <= max => Ok(n),
        _ => Err(Status::invalid_argument(format!(
            "{field}: must be from 1 to {max} (or unset for {default})"
        ))),
    }
}

/// A glob where `*` stays within one path part and `**` crosses parts.
pub fn glob(field: &str, pattern: &str) -> Result<GlobMatcher, Status> {
    if pattern.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Status::invalid_argument(format!("{field}: {pattern:?} is not a glob: {e}")))
}

/// Lists `path` to `depth` levels, at most `limit` entries.
pub fn list_dir(
    root: &Root,
    path: &Path,
    depth: usize,
    limit: usize,
) -> Result<(Vec<pb::FileInfo>, bool), Status> {
    let meta = root.stat_follow(path).map_err(|e| io_status(path, e))?;
    if meta.kind != Kind::Dir {
        return Err(Status::failed_precondition(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    let mut entries = Vec::new();
    let truncated = list_into(root, path, depth, limit, &mut entries)?;
    Ok((entries, truncated))
}

fn list_into(
    root: &Root,
    dir: &Path,
    depth: usize,
    limit: usize,
    entries: &mut Vec<pb::FileInfo>,
) -> Result<bool, Status> {
    for name in root.list(dir).map_err(|e| io_status(dir, e))? {
        if entries.len() == limit {
            return Ok(true);
        }
        let path = dir.join(&name);
        let Ok(meta) = root.stat(&path) else {
            continue; // Gone meanwhile.
        };
        entries.push(file_info(root, &path, &meta));
        if meta.kind == Kind::Dir && depth > 1 && list_into(root, &path, depth - 1, limit, entries)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads by lines or by bytes, as the request says.
pub fn read_file(
    root: &Root,
    path: &Path,
    request: &pb::ReadFileRequest,
) -> Result<pb::ReadFileResponse, Status> {
    let max_bytes = match request.max_bytes {
        0 => 1 << 20,
        n if n > 0 && n as usize <= MAX_SMALL_FILE_BYTES => n as usize,
        _ => {
            return Err(Status::invalid_argument(format!(
                "max_bytes: must be from 1 to {MAX_SMALL_FILE_BYTES}"
            )));
        }
    };
    if request.offset < 0 || request.limit < 0 || request.byte_offset < 0 || request.byte_length < 0
    {
        return Err(Status::invalid_argument(
            "offset, limit, byte_offset and byte_length: must not be negative",
        ));
    }
    let byte_mode = request.byte_offset > 0 || request.byte_length > 0;
    if byte_mode && (request.offset > 0 || request.limit > 0) {
        return Err(Status::invalid_argument(
            "read by lines (offset, limit) or by bytes (byte_offset, byte_length), not both",
        ));
    }
    let mut file = root.open_read(path).map_err(|e| io_status(path, e))?;
    let meta = root.stat_follow(path).map_err(|e| io_status(path, e))?;
    if meta.kind != Kind::File {
        return Err(Status::failed_precondition(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let size = meta.size;
    if byte_mode {
        let start = (request.byte_offset as u64).min(size);
        let wanted = if request.byte_length == 0 {
            size - start
        } else {
            (request.byte_length as u64).min(size - start)
        };
        let take = wanted.min(max_bytes as u64);
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_status(path, e))?;
        let mut content = Vec::with_capacity(take as usize);
        file.take(take)
            .read_to_end(&mut content)
            .map_err(|e| io_status(path, e))?;
        return Ok(pb::ReadFileResponse {
            truncated: start + (content.len() as u64) < size,
            content,
            size: size as i64,
            first_line: 0,
            lines: 0,
        });
    }
    let first_line = request.offset.max(1);
    let limit = if request.limit == 0 {
        i64::MAX
    } else {
        request.limit
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0i64;
    let mut content = Vec::new();
    let mut lines = 0i64;
    let mut truncated = false;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_status(path, e))?;
        if read == 0 {
            break;
        }
        number += 1;
        if number < first_line {
            continue;
        }
        if lines == limit {
            truncated = true;
            break;
        }
        if content.len() + line.len() > max_bytes {
            // Cut at a line's end, unless even the first line is too long.
            if lines == 0 {
                content.extend_from_slice(&line[..max_bytes]);
                lines = 1;
            }
            truncated = true;
            break;
        }
        content.extend_from_slice(&line);
        lines += 1;
    }
    Ok(pb::ReadFileResponse {
        content,
        truncated,
        size: size as i64,
        first_line,
        lines,
    })
}

/// Replaces `old_text` with `new_text`; returns how many were replaced.
pub fn edit_file(
    root: &Root,
    shared: Arc<Root>,
    path: &Path,
    request: &pb::EditFileRequest,
) -> Result<i64, Status> {
    if request.old_text.is_empty() {
        return Err(Status::invalid_argument("old_text: is required"));
    }
    let meta = root.stat_follow(path).map_err(|e| io_status(path, e))?;
    if meta.kind != Kind::File {
        return Err(Status::failed_precondition(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.size > MAX_EDIT_BYTES {
        return Err(Status::failed_precondition(format!(
            "{} has {} bytes; EditFile changes files of at most {MAX_EDIT_BYTES}",
            path.display(),
            meta.size
        )));
    }
    let mut bytes = Vec::with_capacity(meta.size as usize);
    root.open_read(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_status(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Status::failed_precondition(format!("{} is not UTF-8 text", path.display()))
    })?;
    let count = text.matches(request.old_text.as_str()).count();
    match count {
        0 => {
            return Err(Status::failed_precondition(format!(
                "old_text does not appear in {}",
                path.display()
            )));
        }
        1 => {}
        n if !request.replace_all => {
            return Err(Status::failed_precondition(format!(
                "old_text appears {n} times in {}; give more context to make it unique, or set \
                 replace_all",
                path.display()
            )));
        }
        _ => {}
    }
    let edited = text.replace(request.old_text.as_str(), &request.new_text);
    let (staged, mut file) = Staged::create(shared, path, meta.mode)?;
    file.write_all(edited.as_bytes())
        .map_err(|e| io_status(path, e))?;
    drop(file);
    staged.commit(path, true)?;
    Ok(count as i64)
}

/// Visits every path under `base` (not `base` itself), depth first, each
/// directory in name order, without following symbolic links; `visit`
/// returns false to stop.
pub(super) fn walk_all(
    root: &Root,
    base: &Path,
    visit: &mut impl FnMut(&Path, &Path, Kind) -> bool,
) -> Result<(), Status> {
    fn inner(
        root: &Root,
        base: &Path,
        dir: &Path,
        depth: usize,
        visit: &mut impl FnMut(&Path, &Path, Kind) -> bool,
    ) -> bool {
        let Ok(names) = root.list(dir) else {
            return true; // Unreadable directories are passed over.
        };
        for name in names {
            let path = dir.join(&name);
            let Ok(meta) = root.stat(&path) else {
                continue;
            };
            let relative = path.strip_prefix(base).unwrap_or(&path);
            if !visit(&path, relative, meta.kind) {
                return false;
            }
            if meta.kind == Kind::Dir
                && depth < MAX_WALK_DEPTH
                && !inner(root, base, &path, depth + 1, visit)
            {
                return false;
            }
        }
        true
    }
    let meta = root.stat_follow(base).map_err(|e| io_status(base, e))?;
    if meta.kind != Kind::Dir {
        return Err(Status::failed_precondition(format!(
            "{} is not a directory",
            base.display()
        )));
    }
    inner(root, base, base, 1, visit);
    Ok(())
}

/// Paths under `base` whose relative path matches `matcher`.
pub fn find_files(
    root: &Root,
    base: &Path,
    matcher: &GlobMatcher,
    limit: usize,
) -> Result<(Vec<String>, bool), Status> {
    let mut paths = Vec::new();
    let mut truncated = false;
    walk_all(root, base, &mut |path, relative, _| {
        if matcher.is_match(relative) {
            if paths.len() == limit {
                truncated = true;
                return false;
            }
            paths.push(path.to_string_lossy().into_owned());
        }
        true
    })?;
    Ok((paths, truncated))
}

/// A compiled Grep request.
pub struct GrepSearch {
    regex: Regex,
    glob: Option<GlobMatcher>,
    /// Whether the glob names files (no '/') rather than relative paths.
    glob_on_name: bool,
}

impl GrepSearch {
    /// Compiles the pattern and glob, or INVALID_ARGUMENT.
    pub fn new(request: &pb::GrepRequest) -> Result<Self, Status> {
        if request.pattern.is_empty() {
            return Err(Status::invalid_argument("pattern: is required"));
        }
        let regex = RegexBuilder::new(&request.pattern)
            .case_insensitive(request.ignore_case)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                Status::invalid_argument(format!("pattern: not a regular expression: {e}"))
            })?;
        let glob = if request.glob.is_empty() {
            None
        } else {
            Some(glob("glob", &request.glob)?)
        };
        Ok(Self {
            regex,
            glob,
            glob_on_name: !request.glob.contains('/'),
        })
    }

    fn wants(&self, relative: &Path) -> bool {
        match &self.glob {
            None => true,
            Some(glob) if self.glob_on_name => relative
                .file_name()
                .is_some_and(|name| glob.is_match(Path::new(name))),
            Some(glob) => glob.is_match(relative),
        }
    }
}

/// Searches `base` (a file, or a directory recursively).
pub fn grep(
    root: &Root,
    base: &Path,
    search: &GrepSearch,
    limit: usize,
) -> Result<pb::GrepResponse, Status> {
    let mut answer = pb::GrepResponse::default();
    let meta = root.stat_follow(base).map_err(|e| io_status(base, e))?;
    if meta.kind == Kind::File {
        grep_file(root, base, search, limit, &mut answer);
        return Ok(answer);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    walk_all(root, base, &mut |path, relative, kind| {
        if kind == Kind::File && search.wants(relative) {
            files.push(path.to_path_buf());
        }
        true
    })?;
    for file in files {
        if !grep_file(root, &file, search, limit, &mut answer) {
            break;
        }
    }
    Ok(answer)
}

/// Adds the matches of one file; false once the limit is reached.
fn grep_file(
    root: &Root,
    path: &Path,
    search: &GrepSearch,
    limit: usize,
    answer: &mut pb::GrepResponse,
) -> bool {
    let Ok(file) = root.open_read(path) else {
        return true;
    };
    let mut reader = BufReader::with_capacity(64 << 10, file);
    match reader.fill_buf() {
        Ok(head) if head[..head.len().min(BINARY_PROBE_BYTES)].contains(&0) => {
            answer.binary_files_skipped += 1;
            return true;
        }
        Ok(_) => {}
        Err(_) => return true,
    }
    answer.files_searched += 1;
    let mut line = Vec::new();
    let mut number = 0i64;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if search.regex.is_match(text) {
            if answer.matches.len() == limit {
                answer.truncated = true;
                return false;
            }
            let mut cut = text.len().min(MAX_GREP_LINE_BYTES);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            answer.matches.push(pb::GrepMatch {
                path: path.to_string_lossy().into_owned(),
                line_number: number,
                line: text[..cut].to_owned(),
            });
        }
    }
}
