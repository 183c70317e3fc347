//! What doc-check reads in a Markdown page: the `lvh` command lines (code block
//! lines and inline code spans), the other code spans, links, anchors and the
//! `<!-- doc-check: ... -->` markers, each with its line. Pure: text in, items out.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// The marker, on the line before a code block, for commands that must not run.
pub const NO_RUN: &str = "doc-check: no-run";

/// One `lvh` invocation found in a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub line: usize,
    /// As written (for messages).
    pub text: String,
    /// The words after `lvh`.
    pub args: Vec<String>,
    /// False under a no-run marker.
    pub run: bool,
    /// An inline code span (which may end in a flag without its value, naming it).
    pub span: bool,
}

/// Everything doc-check needs from one page.
#[derive(Debug, Default)]
pub struct Page {
    pub commands: Vec<CommandLine>,
    /// Inline code spans that are not `lvh` commands: `(line, text)`.
    pub spans: Vec<(usize, String)>,
    /// Every code block line: `(line, text)`, comments kept.
    pub block_lines: Vec<(usize, String)>,
    /// Link destinations: `(line, destination)`.
    pub links: Vec<(usize, String)>,
    /// Anchors a link's `#fragment` may name: GitHub's heading slugs and `<a id>`s.
    pub anchors: Vec<String>,
    /// Misplaced or unknown markers: `(line, message)`.
    pub problems: Vec<(usize, String)>,
}

/// Block languages whose lines may be shell commands.
fn is_shell(lang: &str) -> bool {
    matches!(lang, "" | "sh" | "bash" | "shell" | "console")
}

pub fn parse(text: &str) -> Page {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let line_of = |off: usize| starts.partition_point(|&s| s <= off);
    let mut page = Page::default();
    let mut pending_marker: Option<usize> = None;
    let mut block: Option<(usize, String, bool, String)> = None; // line, lang, run, text
    let mut heading: Option<String> = None;
    let mut slugs = Slugger::default();
    let opts = Options::ENABLE_TABLES;
    for (ev, range) in Parser::new_ext(text, opts).into_offset_iter() {
        let line = line_of(range.start);
        match ev {
            Event::Html(h) | Event::InlineHtml(h) => {
                anchors_in(&h, &mut page.anchors);
                if let Some(m) = marker_in(&h) {
                    if m == NO_RUN {
                        pending_marker = Some(line);
                    } else {
                        page.problems.push((line, format!("unknown marker `{m}`")));
                    }
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                let fence = text[range.clone()].trim_start();
                let first = match fence.starts_with("```") || fence.starts_with("~~~") {
                    true => line + 1,
                    false => line,
                };
                block = Some((first, lang, pending_marker.take().is_none(), String::new()));
            }
            Event::Start(Tag::Paragraph | Tag::Heading { .. } | Tag::List(_) | Tag::Table(_)) => {
                if let Some(m) = pending_marker.take() {
                    let msg = format!("`<!-- {NO_RUN} -->` is not followed by a code block");
                    page.problems.push((m, msg));
                }
                if matches!(ev, Event::Start(Tag::Heading { .. })) {
                    heading = Some(String::new());
                }
            }
            Event::Text(t) => match (&mut block, &mut heading) {
                (Some(b), _) => b.3.push_str(&t),
                (None, Some(h)) => h.push_str(&t),
                _ => {}
            },
            Event::End(TagEnd::CodeBlock) => {
                if let Some((first, lang, run, body)) = block.take() {
                    code_block(&mut page, first, &lang, run, &body);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    page.anchors.push(slugs.slug(&h));
                }
            }
            Event::Code(c) => {
                if let Some(h) = &mut heading {
                    h.push_str(&c);
                }
                let cmds = commands_in(&c);
                if cmds.is_empty() {
                    page.spans.push((line, c.to_string()));
                }
                for args in cmds {
                    page.commands.push(CommandLine {
                        line,
                        text: c.to_string(),
                        args,
                        run: true,
                        span: true,
                    });
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                page.links.push((line, dest_url.to_string()));
            }
            _ => {}
        }
    }
    if let Some(m) = pending_marker {
        let msg = format!("`<!-- {NO_RUN} -->` is not followed by a code block");
        page.problems.push((m, msg));
    }
    page
}

/// A code block's lines: all kept for `block_lines`; shell ones scanned for `lvh`.
fn code_block(page: &mut Page, first: usize, lang: &str, run: bool, body: &str) {
    let lines: Vec<&str> = body.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        page.block_lines.push((first + i, l.to_string()));
    }
    if !is_shell(lang) {
        return;
    }
    let prompted = lines.iter().any(|l| l.starts_with("$ "));
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut text = lines[i].to_string();
        while text.ends_with('\\') && i + 1 < lines.len() {
            text.pop();
            i += 1;
            text.push_str(lines[i]);
        }
        i += 1;
        let text = match (prompted, text.strip_prefix("$ ")) {
            (true, None) => continue,
            (_, Some(t)) => t.to_string(),
            (false, None) => text,
        };
        for args in commands_in(&text) {
            page.commands.push(CommandLine {
                line: first + start,
                text: text.trim().to_string(),
                args,
                run,
                span: false,
            });
        }
    }
}

/// The marker name in an HTML comment `<!-- doc-check: NAME ... -->`.
fn marker_in(html: &str) -> Option<String> {
    let inner = html.trim().strip_prefix("<!--")?.trim_start();
    let rest = inner.strip_prefix("doc-check:")?.trim_start();
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Some(format!("doc-check: {name}"))
}

/// `<a id="x">` / `<a name="x">` anchors.
fn anchors_in(html: &str, out: &mut Vec<String>) {
    let re = regex::Regex::new(r#"<a\s+(?:id|name)="([^"]+)""#).unwrap();
    out.extend(re.captures_iter(html).map(|c| c[1].to_string()));
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to
/// hyphens, and `-1`, `-2`, ... for repeats.
#[derive(Default)]
struct Slugger(std::collections::HashMap<String, usize>);

impl Slugger {
    fn slug(&mut self, heading: &str) -> String {
        let base: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = self.0.entry(base.clone()).or_insert(0);
        *n += 1;
        match *n {
            1 => base,
            n => format!("{base}-{}", n - 1),
        }
    }
}

/// Shell words and the operators between them.
#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// `|`, `||`, `&`, `&&`, `;`: a new command follows.
    Sep,
    /// `<`, `>`, `>>`, ...: the rest of the command is a redirection.
    Redirect,
}

/// Splits a shell line into words (quotes and backslashes undone) and operators;
/// a `#` starting a word ends the line.
fn tokens(line: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    w.push(d);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            w.push(chars.next().unwrap())
                        }
                        _ => w.push(d),
                    }
                }
            }
            '\\' => {
                if let Some(d) = chars.next() {
                    word.get_or_insert_with(String::new).push(d);
                }
            }
            '#' if word.is_none() => break,
            '|' | '&' | ';' => {
                out.extend(word.take().map(Tok::Word));
                while matches!(chars.peek(), Some('|' | '&')) {
                    chars.next();
                }
                out.push(Tok::Sep);
            }
            '<' | '>' => {
                out.extend(word.take().map(Tok::Word));
                while matches!(chars.peek(), Some('<' | '>' | '&')) {
                    chars.next();
                }
                out.push(Tok::Redirect);
            }
            c if c.is_whitespace() => out.extend(word.take().map(Tok::Word)),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word.take().map(Tok::Word));
    out
}

/// The argument lists of every `lvh` command in a shell line: per pipeline
/// segment, after `VAR=value` words and `sudo`/`env`/`nice`/`time`.
pub fn commands_in(line: &str) -> Vec<Vec<String>> {
    let toks = tokens(line);
    let mut out = Vec::new();
    for seg in toks.split(|t| *t == Tok::Sep) {
        let mut words = seg.iter().map_while(|t| match t {
            Tok::Word(w) => Some(w.as_str()),
            _ => None,
        });
        let first =
            words.find(|w| !(matches!(*w, "sudo" | "env" | "nice" | "time") || is_assignment(w)));
        if first == Some("lvh") {
            out.push(words.map(String::from).collect());
        }
    }
    out
}

/// The words of a code span, quotes undone, up to the first operator.
pub fn words(span: &str) -> Vec<String> {
    tokens(span)
        .into_iter()
        .map_while(|t| match t {
            Tok::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commands_are_found_after_prompts_assignments_and_pipes() {
        let cases: &[(&str, &[&[&str]])] = &[
            (
                "lvh run --kernel k -- uname -a",
                &[&["run", "--kernel", "k", "--", "uname", "-a"]],
            ),
            ("LVH_ACCEL=tcg sudo lvh test --list", &[&["test", "--list"]]),
            ("printf 'x\\n' | lvh run --shell", &[&["run", "--shell"]]),
            (
                "lvh images example-config > _data/images.json",
                &[&["images", "example-config"]],
            ),
            (
                "lvh kernels list --dir D | head -1",
                &[&["kernels", "list", "--dir", "D"]],
            ),
            (
                "lvh run -- sh -c 'exit 3'   # comment",
                &[&["run", "--", "sh", "-c", "exit 3"]],
            ),
            (
                "lvh kernels add m ~/src/linux#br --dir _data",
                &[&["kernels", "add", "m", "~/src/linux#br", "--dir", "_data"]],
            ),
            (
                "lvh run --append \"dyndbg=\\\"x\\\"\"",
                &[&["run", "--append", "dyndbg=\"x\""]],
            ),
            ("cargo install lvh", &[]),
            ("lvh-init", &[]),
            ("$TMPDIR/lvh-qemu-<lvh pid>.pid", &[]),
            (
                "lvh run --image <ref> -- x; lvh version",
                &[&["run", "--image"], &["version"]],
            ),
            ("lvh: gdbstub on 127.0.0.1:1234", &[]),
        ];
        for (line, want) in cases {
            let want: Vec<Vec<String>> = want.iter().map(|w| args(w)).collect();
            assert_eq!(commands_in(line), want, "{line}");
        }
    }

    #[test]
    fn blocks_spans_markers_links_and_anchors_are_read_with_their_lines() {
        let md = "# Title `lvh`\n\nRun `lvh version` and `--persist`, see [x](other.md#a-b).\n\n\
                  ```sh\nlvh run \\\n  --kernel k -- true\ncd /x\n```\n\n\
                  <!-- doc-check: no-run -->\n```\n$ lvh bogus\noutput lvh run\n```\n\n\
                  ## A b\n\n<a id=\"late\"></a>text\n\n```json\n{\"LVH_X\": 1}\n```\n";
        let p = parse(md);
        let cmds: Vec<(usize, Vec<String>, bool)> = p
            .commands
            .iter()
            .map(|c| (c.line, c.args.clone(), c.run))
            .collect();
        assert_eq!(
            cmds,
            vec![
                (1, args(&[]), true),
                (3, args(&["version"]), true),
                (6, args(&["run", "--kernel", "k", "--", "true"]), true),
                (13, args(&["bogus"]), false),
            ]
        );
        assert_eq!(p.spans, vec![(3, "--persist".to_string())]);
        assert_eq!(p.links, vec![(3, "other.md#a-b".to_string())]);
        assert_eq!(p.anchors, vec!["title-lvh", "a-b", "late"]);
        assert!(p.block_lines.contains(&(22, "{\"LVH_X\": 1}".to_string())));
        assert!(p.problems.is_empty(), "{:?}", p.problems);
    }

    #[test]
    fn a_marker_not_before_a_code_block_and_an_unknown_one_are_problems() {
        let p = parse("<!-- doc-check: no-run -->\n\ntext\n\n<!-- doc-check: no-frobnicate -->\n");
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert_eq!(p.problems[0].0, 1);
        assert!(
            p.problems[1].1.contains("no-frobnicate"),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn slugs_follow_github() {
        let mut s = Slugger::default();
        assert_eq!(s.slug("The project's own jobs"), "the-projects-own-jobs");
        assert_eq!(
            s.slug("The test matrix: lvh test"),
            "the-test-matrix-lvh-test"
        );
        assert_eq!(s.slug("Exit codes"), "exit-codes");
        assert_eq!(s.slug("Exit codes"), "exit-codes-1");
    }

    #[test]
    fn span_words_stop_at_operators() {
        assert_eq!(words("--fast-boot=false"), args(&["--fast-boot=false"]));
        assert_eq!(words("-p ADDR:H:V | x"), args(&["-p", "ADDR:H:V"]));
    }
}
