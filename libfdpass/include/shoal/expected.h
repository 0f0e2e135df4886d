// A minimal expected<T, E> for the data path (C++20 lacks std::expected): a value or an error.
#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

namespace shoal {

template <typename E>
class Unexpected {
public:
	explicit Unexpected(E e) : error_(std::move(e)) {}
	E &error() & { return error_; }
	E &&error() && { return std::move(error_); }

private:
	E error_;
};

template <typename E>
Unexpected(E) -> Unexpected<E>;

template <typename T, typename E>
class [[nodiscard]] Expected {
public:
	Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
	template <typename G>
	Expected(Unexpected<G> u) : v_(std::in_place_index<1>, std::move(u).error()) {}

	bool has_value() const { return v_.index() == 0; }
	explicit operator bool() const { return has_value(); }

	T &value() & { assert(has_value()); return std::get<0>(v_); }
	const T &value() const & { assert(has_value()); return std::get<0>(v_); }
	T &&value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
	T &operator*() & { return value(); }
	const T &operator*() const & { return value(); }
	T &&operator*() && { return std::move(*this).value(); }
	T *operator->() { return &value(); }
	const T *operator->() const { return &value(); }

	const E &error() const { assert(!has_value()); return std::get<1>(v_); }
	E &error() { assert(!has_value()); return std::get<1>(v_); }

private:
	std::variant<T, E> v_;
};

template <typename E>
class [[nodiscard]] Expected<void, E> {
public:
	Expected() = default;
	template <typename G>
	Expected(Unexpected<G> u) : error_(std::move(u).error()), ok_(false) {}

	bool has_value() const { return ok_; }
	explicit operator bool() const { return ok_; }
	const E &error() const { assert(!ok_); return error_; }
	E &error() { assert(!ok_); return error_; }

private:
	E error_{};
	bool ok_ = true;
};

/* The data path reports failures as a positive errno value. */
template <typename T>
using Result = Expected<T, int>;

inline Unexpected<int> errno_error(int err) { return Unexpected<int>(err); }

} // namespace shoal
