package transfer

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-dev/strata/layerstore"
)

// LoadOptions tune Load. The zero value loads every image under all its names.
type LoadOptions struct {
	// Names picks images: only those with one of these names are loaded,
	// and under those names only. Each is taken through
	// layerstore.ParseTag ("demo" is "demo:latest").
	Names []string
	// From names where the images come from (an archive's path) in errors.
	From string
	// Progress, if set, is called before each image is stored; the function
	// it returns (nil for none) receives that image's ingest progress.
	Progress func(img *layerstore.ImageSource) func(layerstore.Progress)
	// Loaded, if set, is called after each image is stored, before the next
	// one starts, with the names it was given.
	Loaded func(img layerstore.Image, names []string)
}

// Load stores images into s, one AddImage each, in order: an image is
// stored whole or not at all, and a failure stops Load with the images
// before it stored. It returns the stored images. A Names option that
// matches no image is an error wrapping layerstore.ErrNotFound.
func Load(ctx context.Context, s *layerstore.Store, images []layerstore.ImageSource, opt LoadOptions) ([]layerstore.Image, error) {
	picked, err := pick(images, opt.Names, opt.From)
	if err != nil {
		return nil, err
	}
	var out []layerstore.Image
	for i := range picked {
		img := &picked[i]
		add := &layerstore.AddOptions{}
		if opt.Progress != nil {
			add.Progress = opt.Progress(img)
		}
		stored, err := s.AddImage(ctx, img, add)
		if err != nil {
			return out, fmt.Errorf("load %s: %w", label(img), err)
		}
		out = append(out, stored)
		if opt.Loaded != nil {
			opt.Loaded(stored, img.Names)
		}
	}
	return out, nil
}

// pick keeps the images with one of names, each under those names only.
func pick(images []layerstore.ImageSource, names []string, from string) ([]layerstore.ImageSource, error) {
	if len(names) == 0 {
		if len(images) == 0 {
			return nil, fmt.Errorf("%s holds no image: %w", from, layerstore.ErrNotFound)
		}
		return images, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		t, err := layerstore.ParseTag(n)
		if err != nil {
			return nil, err
		}
		want[t] = true
	}
	var picked []layerstore.ImageSource
	var all []string
	for _, img := range images {
		all = append(all, img.Names...)
		var keep []string
		for _, n := range img.Names {
			if want[n] {
				keep = append(keep, n)
			}
		}
		if len(keep) > 0 {
			img.Names = keep
			picked = append(picked, img)
		}
	}
	if len(picked) == 0 {
		return nil, fmt.Errorf("%s has no image named %s (it has: %s): %w", from, strings.Join(names, ", "), strings.Join(all, ", "), layerstore.ErrNotFound)
	}
	return picked, nil
}

// label names an image in errors: its first name, else its ID.
func label(img *layerstore.ImageSource) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return string(img.ConfigDigest)
}
