package post

import (
	"strings"

	postv1 "github.com/shopbus/shopbus/gen/go/shopbus/post/v1"
	posteventsv1 "github.com/shopbus/shopbus/gen/go/social/post/v1"
)

// visibilityName is the stored name (posts.visibility) of v, an API or
// event visibility: "PUBLIC" or "FOLLOWERS", the enum value's name without
// its "VISIBILITY_" prefix.
func visibilityName(v interface{ String() string }) string {
	return strings.TrimPrefix(v.String(), "VISIBILITY_")
}

// visibilityOf is the API's visibility of a stored name.
func visibilityOf(name string) postv1.Visibility {
	return postv1.Visibility(postv1.Visibility_value["VISIBILITY_"+name])
}

// eventVisibility is the event's visibility of a stored name.
func eventVisibility(name string) posteventsv1.Visibility {
	return posteventsv1.Visibility(posteventsv1.Visibility_value["VISIBILITY_"+name])
}
