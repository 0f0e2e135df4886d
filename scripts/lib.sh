# Shared by scripts/*: where things are, and configuring a build directory once.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# configure_build DIR [meson options...]: set up DIR if needed (reconfigure if options changed).
configure_build() {
	local dir=$1
	shift
	if [ -f "$top/$dir/build.ninja" ]; then
		meson configure "$top/$dir" "$@" >/dev/null
	else
		meson setup "$top/$dir" "$top" "$@"
	fi
}
