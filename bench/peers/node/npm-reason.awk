# One-line reason from a failed `npm ci` log (used by the Makefile): the npm error code, plus the
# first compiler / node-gyp error, else the first descriptive `npm error` line.
{
	sub(/\r$/, "")
	npm = sub(/^npm (ERR!|error) /, "")
	sub(/^[ \t]+/, "")
}
npm && /^code / && code == "" { code = $2; next }
/(fatal )?error: / && cc == "" { cc = $0; next }
/^gyp ERR! (stack Error|configure error|build error)/ && gyp == "" { gyp = $0; next }
npm && msg == "" && !/^(syscall|errno|path|command|signal|code|at |A complete log|If you|[{}]|$)/ { msg = $0 }
END {
	detail = cc != "" ? cc : (gyp != "" ? gyp : msg)
	out = (code != "" ? "code " code : "")
	if (detail != "") out = out (out != "" ? ": " : "") detail
	print substr(out, 1, 240)
}
