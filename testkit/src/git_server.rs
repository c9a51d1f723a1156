//! A git server over smart HTTP on a free loopback port, serving repositories that
//! tests create, optionally behind HTTP basic auth.
//!
//! Each request is handed to `git http-backend` (CGI) by a tiny HTTP/1.1 server (one
//! request per connection, `Connection: close`): clone, fetch and push work with any
//! git client, including libgit2's built-in HTTP transport. Repositories are bare
//! repositories under a temporary directory; [`Repo`] keeps a working copy next to
//! each one to write files, commit and push. Everything is removed when the
//! [`GitServer`] is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, bail};
use base64::Engine as _;

/// Author and committer of commits made through [`Repo::commit`].
pub const AUTHOR: (&str, &str) = ("Kiln Test", "kiln-test@example.invalid");
/// The branch repositories are created with.
pub const DEFAULT_BRANCH: &str = "main";

/// A running git server. Drop stops it and deletes every repository.
#[derive(Debug)]
pub struct GitServer {
    address: String,
    auth: Option<(String, String)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl GitServer {
    /// Starts a server that allows anonymous clone, fetch and push.
    ///
    /// Errors when no loopback port can be bound or `git` is not installed.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(None, None)
    }

    /// Starts an anonymous server listening on `host` instead of 127.0.0.1 (a local
    /// node's bridge address, so that pods can clone).
    pub fn start_on(host: std::net::IpAddr) -> anyhow::Result<Self> {
        Self::start_inner(None, Some(host))
    }

    /// Starts a server that answers 401 unless the request carries HTTP basic auth
    /// with `username`/`password`.
    pub fn start_with_basic_auth(username: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_inner(Some((username.to_owned(), password.to_owned())), None)
    }

    fn start_inner(
        auth: Option<(String, String)>,
        host: Option<std::net::IpAddr>,
    ) -> anyhow::Result<Self> {
        let out = Command::new("git")
            .arg("--exec-path")
            .output()
            .context("running git (install it with hack/setup.sh)")?;
        if !out.status.success() {
            bail!(
                "git --exec-path failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let backend =
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("git-http-backend");
        if !backend.is_file() {
            bail!("{} not found (Debian package git)", backend.display());
        }
        let dir = tempfile::Builder::new().prefix("kiln-git-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("repos"))?;
        std::fs::create_dir_all(dir.path().join("work"))?;
        let host = host.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let listener =
            TcpListener::bind((host, 0)).with_context(|| format!("binding a port on {host}"))?;
        let address = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Backend {
            program: backend,
            project_root: dir.path().join("repos"),
            expected_auth: auth.as_ref().map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
        });
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-git-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop_flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let ctx = ctx.clone();
                    std::thread::spawn(move || {
                        let _ = ctx.serve(conn);
                    });
                }
            })?;
        Ok(Self {
            address,
            auth,
            stop,
            thread: Some(thread),
            dir,
        })
    }

    /// `HOST:PORT` (127.0.0.1 unless started with [`GitServer::start_on`]).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The directory holding the bare repositories (`NAME.git`); a bare repository
    /// created there by other means is served too.
    pub fn repos_dir(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    /// Clone URL of repository `name`: `http://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.address)
    }

    /// Clone URL with the basic-auth credentials embedded (same as [`Self::url`] without
    /// auth).
    pub fn url_with_credentials(&self, name: &str) -> String {
        match &self.auth {
            Some((u, p)) => format!("http://{u}:{p}@{}/{name}.git", self.address),
            None => self.url(name),
        }
    }

    /// Creates an empty bare repository `name` (default branch `main`) and its working
    /// copy. `name` may contain `/` (`org/shop`).
    pub fn create_repo(&self, name: &str) -> anyhow::Result<Repo> {
        if name.is_empty()
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("invalid repository name {name:?}");
        }
        let bare = self.dir.path().join("repos").join(format!("{name}.git"));
        if bare.exists() {
            bail!("repository {name} already exists on the git server");
        }
        std::fs::create_dir_all(&bare)?;
        git(
            &bare,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch",
                DEFAULT_BRANCH,
            ],
        )?;
        let work = self.dir.path().join("work").join(name);
        std::fs::create_dir_all(&work)?;
        git(
            &work,
            &["init", "--quiet", "--initial-branch", DEFAULT_BRANCH],
        )?;
        git(
            &work,
            &["remote", "add", "origin", &bare.display().to_string()],
        )?;
        Ok(Repo {
            name: name.to_owned(),
            url: self.url(name),
            work,
        })
    }

    /// Creates repository `name` with `files` (path, contents) in one commit; returns
    /// the repository and the commit id.
    pub fn create_repo_with_files(
        &self,
        name: &str,
        files: &[(&str, &str)],
    ) -> anyhow::Result<(Repo, String)> {
        let repo = self.create_repo(name)?;
        for (path, contents) in files {
            repo.write(path, contents)?;
        }
        let commit = repo.commit("initial commit")?;
        Ok((repo, commit))
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. If its address is already gone (a
        // node bridge deleted first), the thread stays blocked in accept: leave it
        // rather than wait forever.
        if let Ok(s) = TcpStream::connect(&self.address) {
            let _ = s.shutdown(Shutdown::Both);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A repository on the server with a working copy to change it.
#[derive(Debug, Clone)]
pub struct Repo {
    name: String,
    url: String,
    work: PathBuf,
}

impl Repo {
    /// The repository name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its clone URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The working copy (commit with [`Repo::commit`]).
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// Writes `contents` to `path` (relative, parents created) in the working copy.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<&Self> {
        let p = self.checked(path)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, contents).with_context(|| format!("writing {path} in {}", self.name))?;
        Ok(self)
    }

    /// Writes an executable file (mode 0755).
    pub fn write_executable(
        &self,
        path: &str,
        contents: impl AsRef<[u8]>,
    ) -> anyhow::Result<&Self> {
        use std::os::unix::fs::PermissionsExt;
        self.write(path, contents)?;
        std::fs::set_permissions(self.checked(path)?, std::fs::Permissions::from_mode(0o755))?;
        Ok(self)
    }

    /// Creates a symlink `path` → `target`.
    pub fn symlink(&self, path: &str, target: &str) -> anyhow::Result<&Self> {
        let p = self.checked(path)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(target, &p)?;
        Ok(self)
    }

    /// Removes a file or directory from the working copy.
    pub fn remove(&self, path: &str) -> anyhow::Result<&Self> {
        let p = self.checked(path)?;
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
        Ok(self)
    }

    /// Commits every change in the working copy on the current branch, pushes it to the
    /// server and returns the commit id (40 hex digits).
    pub fn commit(&self, message: &str) -> anyhow::Result<String> {
        git(&self.work, &["add", "--all"])?;
        git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        )?;
        let branch = git(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"])?;
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        )?;
        self.head()
    }

    /// Switches the working copy to `branch`, creating it from the current commit if it
    /// does not exist.
    pub fn checkout_branch(&self, branch: &str) -> anyhow::Result<&Self> {
        if git(&self.work, &["rev-parse", "--verify", "--quiet", branch]).is_ok() {
            git(&self.work, &["checkout", "--quiet", branch])?;
        } else {
            git(&self.work, &["checkout", "--quiet", "-b", branch])?;
        }
        Ok(self)
    }

    /// Creates lightweight tag `name` at the current commit and pushes it.
    pub fn tag(&self, name: &str) -> anyhow::Result<&Self> {
        git(&self.work, &["tag", name])?;
        git(
            &self.work,
            &["push", "--quiet", "origin", &format!("refs/tags/{name}")],
        )?;
        Ok(self)
    }

    /// The current commit id.
    pub fn head(&self) -> anyhow::Result<String> {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn checked(&self, path: &str) -> anyhow::Result<PathBuf> {
        let p = Path::new(path);
        if path.is_empty()
            || !p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            bail!(
                "path {path:?} must be relative and stay inside repository {}",
                self.name
            );
        }
        Ok(self.work.join(p))
    }
}

/// Runs git in `dir` with a fixed identity and dates from the environment, ignoring the
/// machine's and user's git configuration; returns trimmed stdout. The error names the
/// command and carries git's stderr. For tests that make repositories of their own.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", AUTHOR.0)
        .env("GIT_AUTHOR_EMAIL", AUTHOR.1)
        .env("GIT_COMMITTER_NAME", AUTHOR.0)
        .env("GIT_COMMITTER_EMAIL", AUTHOR.1)
        // Ignore the machine's and user's git configuration.
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} in {} failed ({}): {}",
            args.join(" "),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// [`git`] for test set-up: panics with git's message when it fails.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    git(dir, args).unwrap_or_else(|e| panic!("{e:#}"))
}

struct Backend {
    program: PathBuf,
    project_root: PathBuf,
    expected_auth: Option<String>,
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("malformed request line {line:?}");
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .context("bad chunk size")?;
            if size == 0 {
                let mut trailer = String::new();
                while reader.read_line(&mut trailer)? > 2 {
                    trailer.clear();
                }
                break;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            reader.read_exact(&mut req.body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        req.body.resize(len, 0);
        reader.read_exact(&mut req.body)?;
    }
    Ok(req)
}

impl Backend {
    fn serve(&self, conn: TcpStream) -> anyhow::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        let req = read_request(&mut reader)?;
        let mut out = conn;
        if let Some(expected) = &self.expected_auth
            && req.header("authorization") != Some(expected.as_str())
        {
            out.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kiln-test\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("GIT_PROJECT_ROOT", &self.project_root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            // Pushes are allowed without an authenticated REMOTE_USER.
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.receivepack")
            .env("GIT_CONFIG_VALUE_0", "true")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("REQUEST_METHOD", &req.method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_LENGTH", req.body.len().to_string())
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Ok(p) = std::env::var("PATH") {
            cmd.env("PATH", p);
        }
        for (header, var) in [
            ("content-type", "CONTENT_TYPE"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "GIT_PROTOCOL"),
        ] {
            if let Some(v) = req.header(header) {
                cmd.env(var, v);
            }
        }
        if self.expected_auth.is_some() {
            cmd.env("REMOTE_USER", "kiln-test");
        }
        let mut child = cmd.spawn().context("starting git http-backend")?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let body = req.body;
        // Feed the body from another thread: the backend may write before reading all.
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut output = Vec::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_end(&mut output)?;
        let _ = feeder.join();
        child.wait()?;
        // CGI response: headers, blank line, body.
        let split = output
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
        let (head, body) = match split {
            Some((i, n)) => (
                String::from_utf8_lossy(&output[..i]).into_owned(),
                &output[i + n..],
            ),
            None => (String::new(), &output[..]),
        };
        let mut status = "200 OK".to_owned();
        let mut response = Vec::new();
        let mut headers = String::new();
        for h in head.lines() {
            if let Some(s) = h.strip_prefix("Status:") {
                status = s.trim().to_owned();
            } else if !h.trim().is_empty() {
                headers.push_str(h.trim_end());
                headers.push_str("\r\n");
            }
        }
        write!(
            response,
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        response.extend_from_slice(body);
        out.write_all(&response)?;
        let _ = out.shutdown(Shutdown::Write);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone(url: &str, dest: &Path) -> std::process::Output {
        Command::new("git")
            .args(["clone", "--quiet", url])
            .arg(dest)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    }

    #[test]
    fn clone_sees_committed_files_and_later_commits() {
        let server = GitServer::start().unwrap();
        let (repo, first) = server
            .create_repo_with_files(
                "org/shop",
                &[
                    ("werf.yaml", "project: shop\n"),
                    ("app/main.sh", "echo hi\n"),
                ],
            )
            .unwrap();
        assert_eq!(first.len(), 40);
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("shop");
        let out = clone(repo.url(), &dest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("werf.yaml")).unwrap(),
            "project: shop\n"
        );
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]).unwrap(), first);

        repo.write("werf.yaml", "project: shop2\n").unwrap();
        let second = repo.commit("rename").unwrap();
        assert_ne!(second, first);
        git(&dest, &["pull", "--quiet", "--ff-only"]).unwrap();
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]).unwrap(), second);
        assert_eq!(git(&dest, &["rev-parse", "HEAD~1"]).unwrap(), first);
    }

    #[test]
    fn basic_auth_is_required_when_configured() {
        let server = GitServer::start_with_basic_auth("ci", "pa55").unwrap();
        server
            .create_repo_with_files("private", &[("README", "secret\n")])
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let denied = clone(&server.url("private"), &tmp.path().join("a"));
        assert!(!denied.status.success());
        let ok = clone(
            &server.url_with_credentials("private"),
            &tmp.path().join("b"),
        );
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("b/README")).unwrap(),
            "secret\n"
        );
    }

    #[test]
    fn bad_names_and_paths_are_refused_by_name() {
        let server = GitServer::start().unwrap();
        let err = server.create_repo("../escape").unwrap_err().to_string();
        assert!(err.contains("../escape"), "{err}");
        let repo = server.create_repo("ok").unwrap();
        let err = repo.write("/etc/passwd", "x").unwrap_err().to_string();
        assert!(err.contains("/etc/passwd") && err.contains("ok"), "{err}");
        let err = server.create_repo("ok").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
